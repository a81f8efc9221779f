# Two entry points: `make demo` and `make test` (CI). Both create .venv on first use; `make test-fast` is the unit tier.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
# constraints.txt pins what the suite passed with on Python 3.11; other Pythons, or CONSTRAINTS= , take the newest.
PYVER := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
CONSTRAINTS ?= $(if $(filter 3.11,$(PYVER)),-c constraints.txt)

.PHONY: install demo lint browser smoke test test-fast bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(CONSTRAINTS) -e '.[wsi,h5ad,ray,dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/hquery demo --store hquery-store --data hquery-demo

# The viewer's browser tests need Debian's chromium and chromium-driver: installed here where this runs as root with
# apt; elsewhere the tests are skipped and say why.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "chromium not installed: the browser tests will be skipped"

lint: install
	$(PY) tools/lint_imports.py

# A regular install, as a user gets it: the wheel in a fresh venv, used from a temporary folder and from the checkout.
smoke: install
	$(PY) tools/wheel_smoke.py

test: lint browser smoke
	$(PY) -m pytest -q

test-fast: lint
	$(PY) -m pytest -q -m "not e2e"

bench: install
	$(PY) benchmarks/ingest_features.py
	$(PY) benchmarks/search.py
	$(PY) benchmarks/filtered_search.py
	$(PY) benchmarks/he_features.py
	$(PY) benchmarks/slide_pooling.py
	$(PY) benchmarks/type_conditioning.py
	$(PY) benchmarks/train_cv.py
	$(PY) benchmarks/ssgsea.py
	$(PY) benchmarks/stress.py
	$(PY) benchmarks/viewer_load.py
	$(PY) benchmarks/encode_floor.py
	$(PY) benchmarks/scale.py
	$(PY) benchmarks/foundation_models.py

clean:
	rm -rf hquery-store hquery-demo
