"""The package stage's summary for a person: the ranking as a small text table."""

from __future__ import annotations

from typing import Any


def candidate_table(record: dict[str, Any]) -> str:
    """The ranking as a small text table for the CLI summary."""
    rows = [("", "candidate", "value", "latency_ms")]
    for index, entry in enumerate(record["candidates"]):
        latency = "-" if entry["latency_ms"] is None else f"{entry['latency_ms']:.2f}"
        rows.append(("*" if index == 0 else "", entry["name"], f"{entry['value']:.6g}", latency))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows)
