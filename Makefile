# make demo   - multi-view video alignment on the embedded data (creates .venv on first use)
# make test   - the test suite
# make bench  - the model overhead benchmark
# make figures - renders data, trains two small models if needed, redraws _doc/
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: venv test demo bench figures clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

venv: $(VENV)/.installed

test: venv
	$(PY) -m pytest -q tests

demo: venv
	$(PY) tools/model_check.py

bench: venv
	$(PY) benchmarks/bench_models.py

figures: venv
	$(PY) tools/make_figures.py

clean:
	rm -rf $(VENV) .pytest_cache
