# Two entry points: `make demo` and `make test`. Both create .venv on first use.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1

.PHONY: install demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[wsi,h5ad,dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/hquery demo --store hquery-store --data hquery-demo

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/ingest_features.py
	$(PY) benchmarks/search.py
	$(PY) benchmarks/train_cv.py
	$(PY) benchmarks/ssgsea.py

clean:
	rm -rf hquery-store hquery-demo
