import pytest

from tests.conftest import copy_store


@pytest.fixture(scope="module")
def store(indexed_store, tmp_path_factory, request):
    """The indexed small demo, a copy for each test module: the viewer records the prompts it runs."""
    return copy_store(indexed_store, tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2]) / "store")
