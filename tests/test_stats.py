"""slovo.stats: planted differences found, no differences invented, and the figures its verdicts rest on."""

import math

import numpy as np
import pytest

from slovo import stats

DRAWS = 2000


def _rate(draws, rng, n_seeds, gap_in_se):
    """How often the paired test calls a difference when A's true mean is `gap_in_se` standard errors of the mean
    paired difference below B's (seed noise sd 1 on each side, independent)."""
    se = math.sqrt(2 / n_seeds)
    called = 0
    for _ in range(draws):
        a = rng.normal(0.0, 1.0, n_seeds) - gap_in_se * se
        b = rng.normal(0.0, 1.0, n_seeds)
        called += stats.paired(a, b).significant
    return called / draws


def test_configs_differing_only_by_seed_are_judged_no_difference_in_95_percent_of_draws():
    # At ALPHA = 0.05 the expected rate is exactly 95%; the band allows the binomial noise of DRAWS draws (3 sd),
    # so this fails when the test is anti-conservative (e.g. a z-test on 3 seeds calls ~12% of draws).
    rng = np.random.default_rng(20)
    band = 3 * math.sqrt(0.05 * 0.95 / DRAWS)
    for n_seeds in (3, 5):
        assert 1 - _rate(DRAWS, rng, n_seeds, 0.0) >= 0.95 - band


def test_a_planted_gap_of_three_standard_errors_is_detected_in_most_draws():
    rng = np.random.default_rng(21)
    assert _rate(DRAWS, rng, 5, 3.0) > 0.5
    assert _rate(DRAWS, rng, 10, 3.0) > 0.7


def test_paired_interval_and_p_value_match_a_t_test_on_the_differences():
    a, b = [1.01, 1.02, 1.03, 1.015], [1.02, 1.026, 1.041, 1.02]
    r = stats.paired(a, b)
    d = np.subtract(a, b)
    assert r.diff == pytest.approx(d.mean())
    half = 3.182446 * d.std(ddof=1) / 2  # t(0.975, df=3) * sd / sqrt(4)
    assert r.half_width == pytest.approx(half, rel=1e-5)
    assert r.low < r.diff < r.high
    assert r.p < 0.05 and r.significant


def test_paired_refuses_a_single_seed():
    with pytest.raises(ValueError, match="two or more"):
        stats.paired([1.0], [1.1])


def test_ratio_se_equals_the_standard_error_of_the_mean_when_denominators_are_equal():
    nats, byts = np.array([1.0, 2.0, 3.0, 4.0]), np.full(4, 2.0)
    assert stats.ratio_se(nats, byts) == pytest.approx(np.std(nats / byts, ddof=1) / 2)


def test_ratio_se_from_sums_agrees_with_the_per_window_form():
    rng = np.random.default_rng(1)
    n, b = rng.uniform(500, 900, 64), rng.integers(200, 400, 64).astype(float)
    sums = (n.sum(), b.sum(), (n * n).sum(), (n * b).sum(), (b * b).sum(), n.size)
    assert stats.ratio_se_from_sums(*sums) == pytest.approx(stats.ratio_se(n, b), rel=1e-9)
    assert math.isnan(stats.ratio_se([1.0], [2.0]))


def test_seeds_needed_reaches_the_power_and_one_fewer_does_not():
    need = stats.seeds_needed(sd=0.004, delta=0.003)
    assert need is not None and need > 2
    assert stats._power(need, 0.004, 0.003) >= stats.POWER > stats._power(need - 1, 0.004, 0.003)
    assert stats.seeds_needed(0.004, 0.0) is None


def test_detectable_difference_shrinks_with_more_seeds():
    d3, d10 = stats.detectable_difference(0.004, 3), stats.detectable_difference(0.004, 10)
    assert d10 < d3
    assert stats._power(10, 0.004, d10) == pytest.approx(stats.POWER, abs=1e-4)


def test_verdict_names_the_lower_config_when_the_difference_is_real():
    line = stats.verdict_line("A", "B", stats.paired([1.01, 1.02, 1.03], [1.03, 1.045, 1.05]))
    assert line.startswith("A lower than B by 0.0217 ± ")
    assert "p = " in line and "3 seeds" in line


def test_verdict_says_how_many_seeds_would_detect_a_difference_it_cannot_call():
    line = stats.verdict_line("A", "B", stats.paired([1.010, 1.030, 1.020], [1.015, 1.024, 1.027]))
    assert line.startswith("no difference detectable with 3 seeds")
    assert "a true difference of 0.0020 would need " in line and "(over the sd's 95% interval)" in line
    assert "3 seeds would detect about" in line


def test_indistinguishable_from_best_keeps_close_configs_and_drops_clearly_worse_ones():
    groups = {
        "best": {0: 1.000, 1: 1.010, 2: 1.005},
        "close": {0: 1.002, 1: 1.008, 2: 1.009},
        "worse": {0: 1.050, 1: 1.061, 2: 1.054},
        "single": {0: 1.3},  # one seed shared: cannot be told apart
    }
    best, tied = stats.indistinguishable_from_best(groups)
    assert best == "best"
    assert tied == {"best", "close", "single"}


def test_spread_gives_median_and_range():
    s = stats.spread([3.0, 1.0, 2.0])
    assert (s.median, s.min, s.max, s.n) == (2.0, 1.0, 3.0, 3)
    assert s.text(".1f") == "2.0 (1.0-3.0)"
    assert stats.spread([5.0]).std is None


@pytest.mark.parametrize("b", [[1.02, 1.0], [1.0, 1.01], [1.01, 1.02], [1.0 + 1e-12, 1.01]])
def test_two_seeds_give_a_verdict_whatever_the_spread_zero_included(b):
    # df = 1: scipy's noncentral t returned nan deep in its lower tail and the power's root finder raised
    line = stats.verdict_line("A", "B", stats.paired([1.0, 1.01], b))
    assert line and "nan" not in line
    for sd in (1e-9, 0.0137, 0.0212, 0.5):
        d = stats.detectable_difference(sd, 2)
        assert math.isfinite(d) and stats._power(2, sd, d) == pytest.approx(stats.POWER, abs=1e-4)


def test_seeds_needed_is_a_range_over_the_uncertain_sd():
    low, high = stats.seeds_needed_range(0.004, 3, 0.003)
    assert low < stats.seeds_needed(0.004, 0.003) < (high or math.inf)


def test_holm_adjusts_step_down_and_keeps_the_order():
    adj = stats.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": math.nan})
    assert adj == pytest.approx({"a": 0.04, "b": 0.09, "c": 0.09, "d": 1.0})


def _seed_groups(rng, k, n, gap=0.0):
    """k configs x n seeds: seed i's effect is shared by every config (same init and data order), each run adds
    its own noise; config c0 is `gap` lower."""
    values = rng.normal(0, 1.0, n)[None, :] + rng.normal(0, 0.3, (k, n))
    values[0] -= gap
    return {f"c{j}": dict(enumerate(values[j])) for j in range(k)}


def _window_runs(rng, k, gap_in_se=0.0, windows=256):
    """k single runs on the same windows of 8 works (windows of a work alike); each run's own per-window noise;
    run r0 lower by `gap_in_se` standard errors of a two-run difference."""
    base = np.repeat(rng.normal(3.0, 0.5, 8), windows // 8) + rng.normal(0, 0.2, windows)
    n_bytes = np.full(windows, 400.0)
    noise = 10.0  # nats per window
    shift = gap_in_se * noise * math.sqrt(2 / windows)  # per window: gap_in_se x se of the mean difference
    return {f"r{j}": (base * 200 + rng.normal(0, noise, windows) - (shift if j == 0 else 0), n_bytes) for j in range(k)}


def _calls(draws, seed, tied_of, k):
    """Rates over draws: all k called tied, and r0/c0 found best and the others not tied with it."""
    rng = np.random.default_rng(seed)
    tied_all = found = 0
    for _ in range(draws):
        best, tied = tied_of(rng)
        tied_all += len(tied) == k
        found += best in ("c0", "r0") and len(tied) < k
    return tied_all / draws, found / draws


def test_planted_identical_configs_5_by_3_seeds_are_called_no_difference_in_95_percent_of_draws():
    # Each against the best at p < 0.05 called identical configs different in about a quarter of draws: the best
    # is picked from the same data. Holm over every pair keeps it under 5% (measured rate ~96%).
    tied_all, _ = _calls(500, 30, lambda rng: stats.indistinguishable_from_best(_seed_groups(rng, 5, 3)), 5)
    assert tied_all >= 0.95


def test_planted_identical_single_runs_on_the_same_windows_are_called_no_difference_in_95_percent_of_draws():
    tied_all, _ = _calls(300, 31, lambda rng: stats.windows_tied_with_best(_window_runs(rng, 10))[:2], 10)
    assert tied_all >= 0.95


def test_planted_gaps_of_the_size_the_paired_noise_allows_are_detected_in_most_draws():
    # two configs x 3 seeds, gap = what 3 seeds detect with 80% power; measured ~80%
    gap = stats.detectable_difference(0.3 * math.sqrt(2), 3)
    _, found = _calls(500, 32, lambda rng: stats.indistinguishable_from_best(_seed_groups(rng, 2, 3, gap)), 2)
    assert found >= 0.7
    # two single runs on the same windows, gap 2.8 standard errors of their paired difference (80% power)
    _, found = _calls(500, 33, lambda rng: stats.windows_tied_with_best(_window_runs(rng, 2, 2.8))[:2], 2)
    assert found >= 0.7
    # ten single runs, one 4 standard errors better: found despite Holm over 45 pairs
    _, found = _calls(200, 34, lambda rng: stats.windows_tied_with_best(_window_runs(rng, 10, 4.0))[:2], 10)
    assert found >= 0.7


def test_window_paired_difference_cancels_what_the_windows_do_to_both():
    rng = np.random.default_rng(5)
    base = rng.normal(600, 100, 64)  # windows differ a lot; the two runs differ by little
    a, b, n_bytes = base + rng.normal(0, 1, 64), base + rng.normal(0, 1, 64) + 2.0, np.full(64, 300.0)
    r = stats.paired_windows(a, b, n_bytes)
    assert r.unit == "windows" and r.n == 64
    assert r.diff == pytest.approx((a - b).sum() / math.log(2) / n_bytes.sum())
    assert r.significant and r.half_width < abs(r.diff)
    assert stats.paired_windows(a, a, n_bytes).p == 1.0
    assert "eval noise only" in stats.verdict_line("A", "B", r)
