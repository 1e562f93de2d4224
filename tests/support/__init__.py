"""What the tests share beyond pytest fixtures (those are in tests/conftest.py), importable from any process
whose sys.path holds the repo root:

- fake_openai: the loopback OpenAI-compatible server that misbehaves on purpose (`python -m
  tests.support.fake_openai` serves it from a process of its own; it imports nothing outside the standard
  library, so it also runs as a plain script);
- escapes: the escape battery for the sandbox of model-written code;
- helpers: the data, prices and eval_func most tests grade with, the fake models' catalog entries, the Hydra
  compose helper, wait_until, free ports, and the environment a child process needs to import this package.
"""
