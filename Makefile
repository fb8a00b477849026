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
	$(PY) -m data_pipeline.render_ftpv --out data/ftpv --preset demo --workers 2
	rm -rf output/demo
	$(PY) multiview_video_alignment.py --data panda --data_root data/ftpv --train_views 6 --img_size 64 \
		--epochs 3 --triplets_per_epoch 192 --batch_size 16 --lr 1e-4 --num_workers 1 --device cpu \
		--output_dir output/demo

bench: venv
	$(PY) benchmarks/bench_models.py

figures: venv
	$(PY) tools/make_figures.py

clean:
	rm -rf $(VENV) .pytest_cache
