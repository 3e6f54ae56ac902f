# Two commands on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean

install: $(STAMP)

# Rebuilt only when the project's declared dependencies change.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[test]"
	# the report test opens flor's HTML report in the system's chromium (needs root)
	command -v chromium >/dev/null || { apt-get update -q && apt-get install -y -q chromium; }
	touch $(STAMP)

demo: install
	$(BIN)/python fixtures/demo.py

test: install
	$(BIN)/python -m pytest -n 2 -q tests

# Every benchmark runs even when one misses its target; the exit status says if any did.
bench: install
	@status=0; for b in bench/bench_*.py; do $(BIN)/python $$b || status=1; done; exit $$status

clean:
	rm -rf $(VENV) build *.egg-info
