"""slovo.format: how figures read in the terminal, the runs table, the leaderboard and the report."""

from __future__ import annotations

import math

from slovo.format import (
    budget_text,
    format_duration,
    format_float,
    format_number,
    format_value,
    human_count,
    short_number,
)


def test_durations_read_as_seconds_minutes_or_hours():
    assert [format_duration(s) for s in (8.54, 42, 1800, 5400.4)] == ["8.5s", "42s", "30m00s", "1h30m00s"]
    assert format_duration(None) == "-"


def test_counts_use_k_m_g_suffixes():
    assert [human_count(n) for n in (999, 1234, 3_500_000, 2.5e9, 0.5)] == ["999", "1.23k", "3.5M", "2.5G", "0.5"]
    assert human_count(None) == "-"


def test_floats_have_fixed_decimals_and_an_optional_spread():
    assert format_float(1.23456) == "1.2346"
    assert format_float(1.5, std=0.01) == "1.5000 ± 0.0100"
    assert format_float(math.nan) == "nan" and format_float(None) == "-" and format_float(None, std=1.0) == "-"


def test_numbers_in_short_columns():
    assert format_number(3.14159) == "3.142" and format_number(123456.0) == "1.235e+05"
    assert format_number(1234567) == "1,234,567" and format_number(None) == "-" and format_number("x") == "x"


def test_parameter_values_as_written():
    assert [format_value(v) for v in (0.001, 3e-05, 64, "wsd", True)] == ["0.001", "3e-05", "64", "wsd", "True"]


def test_long_decimals_read_back_as_text_are_shortened():
    assert short_number("0.123456789") == "0.12346"
    assert [short_number(t) for t in ("12345678901", "0.5", "trial-000", "", None)] == [
        "12345678901",
        "0.5",
        "trial-000",
        "",
        "",
    ]


def test_budget_joins_its_limits():
    assert budget_text({"time_s": 1800, "max_steps": 0, "max_tokens": 0}) == "30m00s"
    assert budget_text({"time_s": 60, "max_steps": 2000, "max_tokens": 5_000_000}) == "1m00s | 2k steps | 5M tok"
    assert budget_text({}) == "-"
