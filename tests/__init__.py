"""The test suite, a package so that its shared support (tests.support) is imported by one name everywhere: by
the tests, by the scripts they start in child processes (with the repo root on PYTHONPATH), by benchmarks/ and
tools/ (run as `python -m benchmarks.…` or `python -m tools.…` from the repo root)."""
