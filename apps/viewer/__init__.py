"""``hquery view``: a local web viewer of a store's slides with tile-score heatmaps (:mod:`hquery.viewer.app`)."""

from hquery.viewer.access import ViewerAccess, viewer_access, viewer_url
from hquery.viewer.app import create_app

__all__ = ["ViewerAccess", "create_app", "serve", "viewer_access", "viewer_url"]


def serve(store, host: str = "127.0.0.1", port: int = 8765, access: ViewerAccess | None = None) -> None:
    """Serve :func:`create_app` over ``store`` until interrupted (uvicorn); ``access`` as
    :func:`viewer_access` makes it for ``host`` unless given."""
    import uvicorn

    access = access or viewer_access(host)
    uvicorn.run(create_app(store, access), host=host, port=port, log_level="warning")
