"""numpy scalars as Python numbers, written once: eval funcs often return np.bool_ or np.float64, and
results must serialise anywhere (JSON, MLflow, Ray) and compare as plain numbers."""
from __future__ import annotations


def plain(value):
    """A numpy scalar as the Python number it holds; anything else as it is."""
    return value.item() if hasattr(value, "item") and hasattr(value, "dtype") else value


def is_number(value) -> bool:
    """bools, ints, floats and numpy scalars of those kinds."""
    return isinstance(plain(value), (bool, int, float))
