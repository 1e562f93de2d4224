"""`python -m engine.tasks`: list the registered tasks and metrics."""
from . import TASKS, discover
from .metrics import METRICS


def main() -> None:
    discover()
    print("tasks:")
    for name in TASKS.names():
        doc = (TASKS.get(name).__doc__ or "").strip().splitlines()
        print(f"  {name:12} {doc[0] if doc else ''}")
    print("metrics for generic tasks: " + ", ".join(METRICS.names()))


if __name__ == "__main__":
    main()
