# make demo   - multi-view video alignment on the embedded data (creates .venv on first use)
# make test   - the test suite
# make bench  - overhead, compiled-model, metric and video-loader benchmarks (about 20 minutes on 2 cores)
# make figures - renders data, trains two small models if needed, redraws _doc/
# make weights - remakes the demo's start point (weights/align_vit_3dtrl.pth) into output/weights/<time>/
# make heldout - renders the four held-out scene families (data/heldout/<family>, about a minute)
# make transfer-weights - remakes the start points for scenes never seen (weights/transfer_*.safetensors)
# make gpu-check - every task's GPU path and the GPU benchmarks in one call (a reduced CPU version without CUDA)
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: venv test demo bench figures weights clean gpu-check

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

venv: $(VENV)/.installed

# Two test processes of one thread each: most tests are chains of short subprocesses that keep one
# core busy, so one process at a time leaves the second core mostly idle. A test file stays on one
# process, so its module fixtures (rendered data) are made once; files go out in the order
# tests/conftest.py collects them (the longest first).
TEST_WORKERS ?= 2
test: venv
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests

# Every run writes a new folder (output/demo/<time>); nothing earlier is replaced or deleted.
STAMP := $(shell date +%Y%m%d-%H%M%S)
DEMO_OUT ?= output/demo/$(STAMP)
IMAGENET_DEMO_OUT ?= output/imagenet_demo/$(STAMP)

# FTPV_ROOT=DIR: your own FTPV root (Pandav1_Train_Frame layout), no rendering: the recipe for a scene the start
# points never saw (TRANSFER_RECIPE, from weights/transfer_vit_3dtrl.safetensors, made by make transfer-weights).
FTPV_ROOT ?=
DEMO_DATA := $(if $(FTPV_ROOT),$(FTPV_ROOT),data/ftpv_demo)
# On the embedded data the demo starts from a 3DTRL ViT the project pretrained on this scene (make weights),
# fine-tunes it at lr 1e-4 and keeps the weight-space average of the fine-tuned model and its start
# (--wise_alpha 0.5); DEMO_INIT= trains from scratch instead (at lr 1e-3).
# On a root of your own: 20 epochs at lr 1e-3 with every video's embeddings centred in time (--center_in_time),
# from the transfer start point, or (DEMO_INIT=) from scratch with the same budget.
TRANSFER_INIT := weights/transfer_vit_3dtrl.safetensors
DEMO_INIT ?= $(if $(FTPV_ROOT),$(TRANSFER_INIT),weights/align_vit_3dtrl.pth)
DEMO_COMMON := --img_size 64 --loss npairs --depth 4 --trl_depth 1 --global_pool avg --views_per_clip 0 \
	--clip_frames 10 --batch_size 2 --triplets_per_epoch 32
TRANSFER_RECIPE := --epochs 20 --patience 20 --lr 1e-3 --center_in_time
EMBEDDED_RECIPE := --epochs 30 --patience 30 $(if $(DEMO_INIT),--lr 1e-4 --wise_alpha 0.5,--lr 1e-3)
# DEMO_ARGS: more flags of multiview_video_alignment.py, given last so they override the recipe's and the command's,
# e.g. DEMO_ARGS="--device cuda", or "--triplets_per_epoch 96": three times the recipe's 20 x 32 clips, which on 45
# training videos lowered one held-out family's unseen-view error of two (docs/alignment.md, How many training videos).
DEMO_ARGS ?=
DEMO_RECIPE := $(DEMO_COMMON) $(if $(FTPV_ROOT),$(TRANSFER_RECIPE),$(EMBEDDED_RECIPE)) $(if $(DEMO_INIT),--init $(DEMO_INIT))

demo: venv
	$(if $(FTPV_ROOT),,$(PY) -m data_pipeline.render_ftpv --out data/ftpv_demo --preset demo --workers 2)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PY) multiview_video_alignment.py --data panda --data_root $(DEMO_DATA) \
		--train_views 6 $(DEMO_RECIPE) --num_workers 0 --device cpu --output_dir $(DEMO_OUT) $(DEMO_ARGS)

bench: venv
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PY) benchmarks/bench_models.py --json output/bench/models.json
	cd action_recognition && OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} ../$(PY) benchmarks/bench_timesformer.py \
		--compile --rounds 5 --out ../output/bench/timesformer.json

figures: venv
	$(PY) tools/make_figures.py

# The demo's start point, in two stages on 600 rendered trajectories seen from random cameras (another seed than
# the demo's data; eased pacing, the data the committed weights were made from): state regression (8 epochs,
# first-person view + 6 cameras), then state regression plus the multi-view n-pairs term (3 epochs, all 10 views).
# About 40 minutes of rendering, 32 + 36 of training on 2 cores.
# WEIGHTS_MODEL=deit_tcn makes the baseline's weights for tools/compare_alignment.py. Writes a new folder; copy
# align_*.pth over weights/ to use it.
WEIGHTS_OUT ?= output/weights/$(STAMP)
WEIGHTS_MODEL ?= vit_3dtrl
weights: venv
	$(PY) -m data_pipeline.render_ftpv --out data/ftpv_pretrain_rc600 --preset demo --trajectories 600 --seed 1 \
		--random_cameras --pacing eased --workers 2
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PY) tools/pretrain_state.py --data_root data/ftpv_pretrain_rc600 \
		--model $(WEIGHTS_MODEL) --epochs 8 --out $(WEIGHTS_OUT)/state_$(WEIGHTS_MODEL).pth
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PY) tools/pretrain_state.py --data_root data/ftpv_pretrain_rc600 \
		--model $(WEIGHTS_MODEL) --init $(WEIGHTS_OUT)/state_$(WEIGHTS_MODEL).pth --align_weight 1 --epochs 3 \
		--lr 2e-4 --train_views 9 --out $(WEIGHTS_OUT)/align_$(WEIGHTS_MODEL).pth

# The scene families no start point was pretrained on, each an FTPV root for `make demo FTPV_ROOT=data/heldout/<family>`.
HELDOUT_FAMILIES := kuka rolling quadruped stacking
.PHONY: heldout
heldout: venv
	for family in $(HELDOUT_FAMILIES); do \
		$(PY) -m data_pipeline.render_ftpv --out data/heldout/$$family --preset heldout --family $$family --workers 2 \
			|| exit 1; done

# The start points for scenes never seen (weights/transfer_*.safetensors), for 3DTRL and the same ViT without it: one
# stage of state regression plus the multi-view n-pairs term on the Panda task and the randomised shapes family,
# each trajectory from its own random cameras (never the held-out families). About 3 minutes of rendering and
# TRANSFER_MINUTES of training per model on 2 cores. Writes a new folder; copy the files over weights/ to use them.
TRANSFER_DATA ?= data/pretrain_mix
TRANSFER_PRETRAIN := --train_views 6 --epochs 3 --align_weight 1 --lr 1e-3
.PHONY: transfer-weights
transfer-weights: venv
	$(PY) -m data_pipeline.render_ftpv --out $(TRANSFER_DATA)/shapes --preset demo --family shapes --trajectories 300 \
		--views 6 --seed 1 --random_cameras --workers 2
	$(PY) -m data_pipeline.render_ftpv --out $(TRANSFER_DATA)/panda --preset demo --trajectories 120 --views 6 --seed 1 \
		--random_cameras --workers 2
	for model in vit_3dtrl deit_tcn; do OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PY) tools/pretrain_state.py \
		--data_root $(TRANSFER_DATA)/shapes $(TRANSFER_DATA)/panda --model $$model $(TRANSFER_PRETRAIN) \
		--out $(WEIGHTS_OUT)/transfer_$$model.safetensors || exit 1; done

# make imagenet-demo - ImageNet training (2 CPU processes, one epoch) and evaluation on the rendered objects
.PHONY: imagenet-demo
imagenet-demo: venv
	$(PY) tools/render_objects.py --out data/objects_small --preset small
	bash i1k.sh 2 data/objects_small -c i1k_configs/vit_3dtrl_1k_scratch.yaml --epochs 1 --warmup-epochs 0 \
		--cooldown-epochs 0 --img-size 64 -b 32 -j 1 --output $(IMAGENET_DEMO_OUT) --experiment vit_3dtrl
	$(PY) imagenet_val.py data/objects_small --checkpoint $(IMAGENET_DEMO_OUT)/vit_3dtrl/last.pth.tar -j 1 \
		--results-file $(IMAGENET_DEMO_OUT)/val.json
	$(PY) imagenet_val.py data/objects_small --checkpoint $(IMAGENET_DEMO_OUT)/vit_3dtrl/last.pth.tar -j 1 \
		--perturbed --results-file $(IMAGENET_DEMO_OUT)/val_perturbed.json

clean:
	rm -rf $(VENV) .pytest_cache

# The check's data is rendered on the CPU (pybullet) once; on a GPU machine without pybullet, render it
# elsewhere first (python tools/gpu_check.py --prepare) and bring data/gpu_check along.
GPU_CHECK_DATA ?= data/gpu_check
gpu-check: venv
	test -d $(GPU_CHECK_DATA)/actions || $(PY) tools/gpu_check.py --prepare --data $(GPU_CHECK_DATA)
	$(PY) tools/gpu_check.py --data $(GPU_CHECK_DATA)
