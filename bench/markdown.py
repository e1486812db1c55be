"""How figures are written in BENCHMARKS.md: a dash for what was not measured."""

from __future__ import annotations

import math


def fmt(value: float, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}"


def ratio(a: float, b: float) -> str:
    if any(math.isnan(v) for v in (a, b)) or b == 0:
        return "—"
    return f"{a / b:.2f}×"
