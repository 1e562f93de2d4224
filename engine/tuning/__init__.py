"""Tuning: FLAML's cost-aware search over inference settings, each config evaluated the EcoOptiGen way."""
from .space import SearchSpace, build_space
from .spec import TuneSpec
from .tuner import Tuner

__all__ = ["SearchSpace", "TuneSpec", "Tuner", "build_space"]
