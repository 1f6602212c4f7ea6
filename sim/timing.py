"""Timing for every benchmark: the machine is noisy (±30 % between runs), so the sides being compared
are measured in alternating rounds and a speed ratio is the median of the per-round ratios. Lives in
``sim`` because ``sim`` benchmarks use it and may not import ``robo_reward``; the other benches import it."""

from __future__ import annotations

import statistics
from collections.abc import Callable


def alternate(measures: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Call every measurement once per round, in the given order, ``rounds`` times; rates per name."""
    rates: dict[str, list[float]] = {name: [] for name in measures}
    for _ in range(rounds):
        for name, measure in measures.items():
            rates[name].append(measure())
    return rates


def median_ratio(a: list[float], b: list[float]) -> float:
    """The median over rounds of a[k] / b[k]: each round's two sides saw the same machine."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def medians(rates: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in rates.items()}
