# Foodie Studio: two commands.
#   make run    installs what is missing, then starts the app on the demo model (127.0.0.1:7860)
#   make test   installs what the tests need (chromium included, via apt), then runs them all
PYTHON ?= python3
# The torch the tests are run against; on a GPU box install your CUDA build first and this is skipped.
TORCH_SPEC ?= torch==2.13.0
ARGS ?=

.PHONY: run test test-gpu-box-transformers install install-test install-browser bench gpu-extras

run: install
	$(PYTHON) app.py $(ARGS)

test: install-test install-browser
	$(PYTHON) -m pytest $(ARGS)
	@$(if $(ARGS),,$(MAKE) --no-print-directory test-gpu-box-transformers)

# The GPU machine our figures come from has transformers 5.17. The tests that lean most on
# transformers' processors and chat templates run again under it: a training-mask bug showed only
# there (bench/README.md). A separate folder, so the suite's own transformers stays as it is.
GPU_BOX_TRANSFORMERS = 5.17.0
test-gpu-box-transformers: install-test
	@$(PYTHON) -m pip install -q --target test-artifacts/transformers-$(GPU_BOX_TRANSFORMERS) --no-deps \
		transformers==$(GPU_BOX_TRANSFORMERS) huggingface-hub==1.5.0
	PYTHONPATH=test-artifacts/transformers-$(GPU_BOX_TRANSFORMERS) $(PYTHON) -c \
		"import transformers; print('these tests again under transformers', transformers.__version__)"
	PYTHONPATH=test-artifacts/transformers-$(GPU_BOX_TRANSFORMERS) $(PYTHON) -m pytest -q \
		tests/test_training_mask.py tests/test_training_packed.py tests/test_engine.py tests/test_scoring.py

install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q "$(TORCH_SPEC)"
	@$(PYTHON) -m pip install -q -r requirements.txt

install-test: install
	@$(PYTHON) -m pip install -q -r requirements-test.txt

# Debian's chromium for the browser tests, and CJK and emoji fonts so Chinese and the buttons' icons
# render in screenshots.
install-browser:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium fonts-noto-cjk fonts-noto-color-emoji >/dev/null \
	    || echo "could not install chromium: the browser tests will be skipped"; \
	fi

bench: install-test
	$(PYTHON) bench/bench_startup.py

# On a GPU box: LMDeploy in its own environment under the work folder, so its pins (torch<=2.12.1,
# peft<=0.14) never touch the training stack. The app finds it there and serves with it. Liger's
# Triton kernels (fused RMSNorm and SwiGLU for training) go into the app's own environment.
WORKDIR ?= runs
LMDEPLOY_SPEC ?= lmdeploy==0.18.0
gpu-extras:
	$(PYTHON) -m venv $(WORKDIR)/lmdeploy-venv
	$(WORKDIR)/lmdeploy-venv/bin/pip install -q "$(LMDEPLOY_SPEC)"
	$(WORKDIR)/lmdeploy-venv/bin/python -c "import lmdeploy; print('LMDeploy', lmdeploy.__version__, 'ready')"
	$(PYTHON) -m pip install -q "liger-kernel>=0.8"
