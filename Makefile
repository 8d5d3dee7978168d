# Foodie Studio: two commands.
#   make run    makes the project's environment (.venv) if needed, then starts the app on the demo model
#   make test   the same environment plus what the tests need (chromium too, via apt), then runs them all
#
# Everything is installed into .venv, never into the system Python (Debian and Ubuntu refuse that:
# PEP 668, "externally-managed-environment"). .venv is made with --system-site-packages, so a torch
# that is already installed for the interpreter it is made from (a GPU box's CUDA build, system-wide
# or in conda) is used as it is, not replaced. PYTHON picks that interpreter:
#   make run PYTHON=/opt/conda/bin/python ARGS="--model Qwen/Qwen2-VL-2B-Instruct"
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch installed where the interpreter has none; pip's arguments, so another CUDA build is e.g.
#   make run TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"
TORCH_SPEC ?= torch==2.13.0
ARGS ?=

.PHONY: run test lint test-gpu-box-transformers install install-test install-browser bench gpu-extras

run: install
	$(PY) app.py $(ARGS)

test: install-test install-browser
	$(PY) -m ruff check .
	$(PY) -m pytest $(ARGS)
	@$(if $(ARGS),,$(MAKE) --no-print-directory test-gpu-box-transformers)

lint: install-test
	$(PY) -m ruff check .

# The GPU machine our figures come from has transformers 5.17. The tests that lean most on
# transformers' processors and chat templates run again under it: a training-mask bug showed only
# there (bench/README.md). A separate folder, so the suite's own transformers stays as it is.
GPU_BOX_TRANSFORMERS = 5.17.0
test-gpu-box-transformers: install-test
	@$(PY) -m pip install -q --target test-artifacts/transformers-$(GPU_BOX_TRANSFORMERS) --no-deps \
		transformers==$(GPU_BOX_TRANSFORMERS) huggingface-hub==1.5.0
	PYTHONPATH=test-artifacts/transformers-$(GPU_BOX_TRANSFORMERS) $(PY) -c \
		"import transformers; print('these tests again under transformers', transformers.__version__)"
	PYTHONPATH=test-artifacts/transformers-$(GPU_BOX_TRANSFORMERS) $(PY) -m pytest -q \
		tests/test_training_mask.py tests/test_training_packed.py tests/test_engine.py tests/test_scoring.py \
		tests/test_picture_memo.py

# The environment. Ubuntu's python3 comes without ensurepip until python3.X-venv is installed:
# then that package is installed the way chromium is (apt, as root or with sudo), or its command
# is printed.
$(PY):
	@if ! $(PYTHON) -m venv --system-site-packages $(VENV) >/dev/null 2>&1; then \
	  rm -rf $(VENV); \
	  pkg=$$($(PYTHON) -c 'import sys; print(f"python3.{sys.version_info[1]}-venv")'); \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  if command -v apt-get >/dev/null 2>&1 && { [ -z "$$SUDO" ] || sudo -n true 2>/dev/null; }; then \
	    echo "$(PYTHON) cannot make a virtual environment (no ensurepip): installing $$pkg"; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$pkg >/dev/null; \
	  fi; \
	  $(PYTHON) -m venv --system-site-packages $(VENV) || { rm -rf $(VENV); \
	    echo "error: $(PYTHON) cannot make a virtual environment. Run: sudo apt-get install $$pkg"; exit 1; }; \
	fi
	@echo "made $(VENV) from $$($(PYTHON) -c 'import sys; print(sys.executable, sys.version.split()[0])')"

install: $(PY)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC)
	@$(PY) -m pip install -q -e .

install-test: $(PY)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC)
	@$(PY) -m pip install -q -e ".[test]"

# Debian's chromium for the browser tests, and CJK and emoji fonts so Chinese and the buttons' icons
# render in screenshots.
install-browser:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium fonts-noto-cjk fonts-noto-color-emoji >/dev/null \
	    || echo "could not install chromium: the browser tests will be skipped"; \
	fi

bench: install-test
	$(PY) bench/bench_startup.py

# On a GPU box: LMDeploy in its own environment under the work folder, so its pins (torch<=2.12.1,
# peft<=0.14) never touch the training stack. The app finds it there and serves with it. Liger's
# Triton kernels (fused RMSNorm and SwiGLU for training) and bitsandbytes (QLoRA's 4-bit base) go
# into the project's environment.
WORKDIR ?= runs
LMDEPLOY_SPEC ?= lmdeploy==0.18.0
gpu-extras: install
	$(PYTHON) -m venv $(WORKDIR)/lmdeploy-venv
	$(WORKDIR)/lmdeploy-venv/bin/pip install -q "$(LMDEPLOY_SPEC)"
	$(WORKDIR)/lmdeploy-venv/bin/python -c "import lmdeploy; print('LMDeploy', lmdeploy.__version__, 'ready')"
	$(PY) -m pip install -q "liger-kernel>=0.8" "bitsandbytes>=0.48"
