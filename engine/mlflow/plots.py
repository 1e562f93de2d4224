"""Cost vs metric of every trial, with the Pareto front (cheapest config for each level of quality)."""
from __future__ import annotations

import math
from pathlib import Path


def pareto_front(points: list[tuple[float, float]], mode: str = "max") -> list[tuple[float, float]]:
    """(cost, metric) points no other point beats on both: lower cost and better metric."""
    sign = 1 if mode == "max" else -1
    front, best = [], -math.inf
    for cost, value in sorted(points, key=lambda p: (p[0], -sign * p[1])):
        if sign * value > best:
            front.append((cost, value))
            best = sign * value
    return front


def cost_vs_metric(trials, metric: str, mode: str, path: Path, title: str = "", chosen=None) -> Path:
    """Scatter of inference cost per instance vs metric; pruned trials greyed out; front as a step line; the
    chosen trial starred, with its 95% interval as an error bar (it lies on the front by construction)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [t for t in trials if t.data_used and _finite(t.inference_cost_usd_per_instance)
                and _finite(t.metrics.get(metric))]
    done = [(t.inference_cost_usd_per_instance * 1000, t.metrics[metric]) for t in measured if not t.pruned]
    pruned = [(t.inference_cost_usd_per_instance * 1000, t.metrics[metric]) for t in measured if t.pruned]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    if pruned:
        ax.scatter(*zip(*pruned), marker="x", color="0.65", label="pruned (partial data)")
    if done:
        ax.scatter(*zip(*done), color="tab:blue", label="evaluated in full")
        front = pareto_front(done, mode)
        ax.step(*zip(*front), where="post", color="tab:red", linewidth=1.2)
        ax.scatter(*zip(*front), s=90, facecolors="none", edgecolors="tab:red", label="Pareto front")
    if chosen is not None and chosen in measured:
        x, y = chosen.inference_cost_usd_per_instance * 1000, chosen.metrics[metric]
        interval = getattr(chosen, "interval", None)
        if interval is not None:
            ax.errorbar([x], [y], yerr=[[max(0.0, y - interval.low)], [max(0.0, interval.high - y)]], fmt="none", ecolor="tab:green",
                        capsize=4, linewidth=1.2)
        ax.scatter([x], [y], marker="*", s=260, color="tab:green", edgecolors="black", zorder=5,
                   label=f"chosen: trial {chosen.number} (95% CI)")
    ax.set_xlabel("inference cost per 1K instances ($)")
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric} vs cost, {len(trials)} trials")
    ax.grid(alpha=0.3)
    if done or pruned:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
