"""One config over data: the evaluator and `test`."""
