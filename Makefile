# The two commands a newcomer needs are `make demo` and `make test`; both set up .venv first.
# `make test` runs the linter (ruff) and then the test suite.
VENV   ?= .venv
PY     := $(VENV)/bin/python
EXTRAS ?= test
# Viewer tests need a GL context: use a virtual X server when there is no display.
XVFB   := $(if $(DISPLAY),,$(shell command -v xvfb-run >/dev/null 2>&1 && echo xvfb-run -a))
JOBS   ?= 2

.PHONY: setup demo test bench clean

setup:
	@bash scripts/bootstrap.sh $(EXTRAS)

demo: setup
	$(PY) -m ldm_med demo --out demo_out

test: setup
	$(VENV)/bin/ruff check .
	$(XVFB) $(PY) -m pytest -n $(JOBS) --dist loadfile -q tests

bench: setup
	$(PY) bench/denoisers.py
	$(PY) bench/reconstruction.py

clean:
	rm -rf $(VENV) .pytest_cache demo_out
