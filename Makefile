# Every target bootstraps .venv itself, so a fresh machine needs nothing installed by hand.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.memweave-installed
SHARED := $(abspath ../shared)
CHROMA_MODEL := $(SHARED)/models/chroma/onnx_models/all-MiniLM-L6-v2/onnx
# Offline model files beside the checkout (see ../shared/models/README), when there: tests and
# benchmarks load them from here, and nothing needs copying into ~/.cache. Exported only when
# present: an empty TIKTOKEN_CACHE_DIR would turn tiktoken's cache off.
ifneq ($(wildcard $(SHARED)/tiktoken),)
export TIKTOKEN_CACHE_DIR ?= $(SHARED)/tiktoken
endif
ifneq ($(wildcard $(CHROMA_MODEL)/model.onnx),)
export MEMWEAVE_EMBEDDING_MODEL_DIR ?= $(CHROMA_MODEL)
endif

.PHONY: venv test lint bench format clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,dev,peers]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup -q

lint: $(STAMP)
	$(VENV)/bin/ruff check memweave tests benchmarks examples
	$(VENV)/bin/ruff format --check memweave tests benchmarks examples
	$(VENV)/bin/mypy --strict memweave benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff check --fix memweave tests benchmarks examples
	$(VENV)/bin/ruff format memweave tests benchmarks examples

LOCOMO ?=

# The main job: every benchmark on the embedded defaults (memory, SQLite, embedded Chroma).
bench: $(STAMP)
	$(PY) -m memweave.cli bench all $(if $(LOCOMO),--locomo $(LOCOMO)) \
		$(if $(wildcard $(CHROMA_MODEL)/model.onnx),--embeddings-dir $(CHROMA_MODEL))

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache bench-results
