"""The selection rule: best ``package.metric`` wins; near-ties go to the faster model.

Candidates within ``package.tie_tolerance`` of the best are separated by forward latency
(:mod:`signflow.packaging.latency`). The reason for the choice is spelled out, because it is
what a person reads in ``reports/package.json`` and the model store's metadata.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from signflow.packaging.candidates import Candidate, PackagingError
from signflow.packaging.latency import forward_latency
from signflow.packaging.metrics import metric_value


@dataclass
class Choice:
    winner: Candidate
    reason: str
    ranked: list[Candidate] = field(default_factory=list)
    skipped: list[Candidate] = field(default_factory=list)


def _ms(value: float | None) -> str:
    return "unknown latency" if value is None or math.isinf(value) else f"{value:.2f} ms"


def choose(
    candidates: Iterable[Candidate],
    metric: str,
    mode: str = "max",
    tie_tolerance: float = 0.0,
    measure_latency: bool = True,
) -> Choice:
    """Best candidate by ``metric``; near-ties (``<= tie_tolerance`` apart) go to the faster model."""
    usable: list[Candidate] = []
    skipped: list[Candidate] = []
    for candidate in candidates:
        candidate.value = metric_value(candidate.metrics, metric)
        if candidate.value is None:
            candidate.note = f"metric {metric!r} not in its metrics"
            skipped.append(candidate)
        else:
            usable.append(candidate)
    if not usable:
        names = ", ".join(c.name for c in skipped) or "none"
        raise PackagingError(f"no candidate has the metric {metric!r} (candidates: {names}); check package.metric")
    sign = 1.0 if mode == "max" else -1.0
    best_value = max(sign * c.value for c in usable)  # type: ignore[operator]
    tied = [c for c in usable if best_value - sign * c.value <= tie_tolerance]  # type: ignore[operator]
    if len(tied) > 1:
        for candidate in tied:
            forward_latency(candidate, measure_latency)
        tied.sort(key=lambda c: c.latency_ms if c.latency_ms is not None else math.inf)
        winner = tied[0]
        others = ", ".join(f"{c.name} {_ms(c.latency_ms)}" for c in tied[1:])
        reason = (
            f"{winner.name} tied on {metric}={winner.value:.6g} ({mode}, tolerance {tie_tolerance:g}) with "
            f"{len(tied) - 1} other(s) and has the lowest forward latency ({_ms(winner.latency_ms)} vs {others})"
        )
    else:
        winner = tied[0]
        runner_up = sorted(usable, key=lambda c: -sign * c.value)[1:2]  # type: ignore[operator]
        if runner_up:
            reason = (
                f"{winner.name} has the best {metric} ({mode}): {winner.value:.6g} vs "
                f"{runner_up[0].value:.6g} for the runner-up {runner_up[0].name} ({len(usable)} candidates)"
            )
        else:
            reason = f"{winner.name} is the only candidate with {metric} ({winner.value:.6g})"
    ranked = sorted(
        usable,
        key=lambda c: (-sign * c.value, c.latency_ms if c.latency_ms is not None else math.inf),  # type: ignore[operator]
    )
    ranked.remove(winner)
    ranked.insert(0, winner)
    return Choice(winner=winner, reason=reason, ranked=ranked, skipped=skipped)
