"""How numbers, durations and values are written for people: one home for the terminal, tables and the report.

Every function takes what a summary or metrics record may hold, including None, and returns text;
"-" stands for a missing figure.
"""

from __future__ import annotations

import math
from typing import Any


def format_duration(seconds: float | None) -> str:
    """8.5 -> '8.5s', 42 -> '42s', 1800 -> '30m00s', 5400 -> '1h30m00s'; None -> '-'."""
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def human_count(n: float | None) -> str:
    """1234 -> '1.23k', 3_500_000 -> '3.5M'; None -> '-'."""
    if n is None:
        return "-"
    for div, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.0f}" if float(n).is_integer() else f"{n:.3g}"


def format_float(x: float | None, digits: int = 4, std: float | None = None) -> str:
    """A figure with a fixed number of decimals ('-' when missing), and its spread when given: '1.2345 ± 0.0100'."""
    if x is None:
        return "-"
    text = "nan" if math.isnan(x) else f"{x:.{digits}f}"
    return text if std is None else f"{text} ± {format_float(std, digits)}"


def format_number(v: Any, digits: int = 4) -> str:
    """A figure of any size in a short column: floats to `digits` significant digits (scientific from 1e5),
    integers with thousands separators, None as '-'."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e5 else f"{v:.3e}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def format_value(v: Any) -> str:
    """A config or sweep parameter value as a person writes it: 0.001 -> '0.001', 3e-05 -> '3e-05'."""
    return f"{v:g}" if isinstance(v, float) else str(v)


def short_number(text: Any) -> str:
    """A number read back from a file as text, shortened when it is a long decimal: '0.123456789' -> '0.12346';
    anything else (names, integers, short numbers) as written."""
    text = "" if text is None else str(text)
    try:
        number = float(text)
    except ValueError:
        return text
    if "." in text and len(text) > 8 and math.isfinite(number):
        return f"{number:.5g}"
    return text


def budget_text(budget: dict) -> str:
    """{'time_s': 1800, 'max_steps': 0, ...} -> '30m00s'; several limits are joined with ' | '."""
    parts = []
    time_s = budget.get("time_s")
    if isinstance(time_s, (int, float)) and not isinstance(time_s, bool) and time_s:
        parts.append(format_duration(time_s))
    if budget.get("max_steps"):
        parts.append(f"{human_count(budget['max_steps'])} steps")
    if budget.get("max_tokens"):
        parts.append(f"{human_count(budget['max_tokens'])} tok")
    return " | ".join(parts) or "-"


def format_bpb(bpb: float | None, se: float | None = None, digits: int = 4) -> str:
    """bits per byte with its eval standard error when known: '1.2345 ± 0.0081' ('-' when missing)."""
    if isinstance(se, (int, float)) and not isinstance(se, bool) and math.isfinite(se):
        return format_float(bpb, digits, std=se)
    return format_float(bpb, digits)


def format_lr(nominal: Any, lr_scale: Any) -> str:
    """A run's lr as it trained: the nominal lr times the divergence guard's `lr_scale` after rollbacks,
    '0.0005 (0.002 x 1/4)', so a probe that diverged and trained at lr/4 is not shown as trained at lr."""
    if not isinstance(nominal, (int, float)) or isinstance(nominal, bool):
        return format_value(nominal) if nominal is not None else "-"
    if not isinstance(lr_scale, (int, float)) or isinstance(lr_scale, bool) or lr_scale == 1:
        return format_value(nominal)
    fraction = f"1/{1 / lr_scale:g}" if 0 < lr_scale < 1 else f"{lr_scale:g}"
    return f"{format_value(nominal * lr_scale)} ({format_value(nominal)} x {fraction})"
