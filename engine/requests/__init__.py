"""One request, end to end: prepare, cache, in-flight claims, budget, providers."""
