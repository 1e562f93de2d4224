"""The engine's vocabulary: errors, typed config, the model catalog and prices, records, templates, digests, redaction, statistics; imports nothing above it."""
