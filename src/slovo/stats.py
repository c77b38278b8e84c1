"""The statistics every comparison in slovo uses: spread of repeats, the standard error of an eval, paired
differences with their interval and p-value, the verdict line, seeds needed, and which configs are
indistinguishable from the best.

One module so that `slovo compare`, sweep leaderboards, tune, the report and bench/ say the same thing about
the same numbers. The tests are scipy's (paired t, Welch t); this module only chooses them and words the answer.

Two sources of noise, and which one a figure carries:
- eval noise: a run's bpb is an estimate over a sample of text (its eval windows); `neighbour_se` is its standard
  error (`eval/bpb_se`): how far another evenly spread set of windows of the same validation text could move it.
- seed noise: the same config trained with another seed (another init and data order) lands elsewhere; only
  repeats measure it.

One rule for comparing: runs of a dataset score the same windows, so two runs are compared paired, over seeds
(`paired`: what a seed does to both alike cancels) where there are seeds, else window by window
(`paired_windows`: what the windows do to both alike cancels; eval noise only). More than two configs:
`tied_with_best` tests every pair with Holm's correction, so the best having been picked from the same data
does not make identical configs look different.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ALPHA = 0.05  # a difference is called when p < ALPHA (its 95% interval leaves out zero)
POWER = 0.8  # "would detect": found in 80% of repeats of the whole comparison
MAX_SEEDS = 10_000  # seeds_needed answers "more than this" beyond it


@dataclass(frozen=True)
class Spread:
    """Repeats of one measurement: how many, their mean and median, standard deviation, range and the
    standard error of the mean (std and sem are None for a single value)."""

    n: int
    mean: float
    median: float
    std: float | None
    min: float
    max: float
    sem: float | None

    def text(self, spec: str = ".4f") -> str:
        """'1.0200 (1.0164-1.0233)': the median and the range, the way bench/results states them (`spec` is a
        format spec, e.g. ',.0f')."""
        return f"{self.median:{spec}} ({self.min:{spec}}-{self.max:{spec}})"


def spread(values: Sequence[float]) -> Spread:
    """Mean, median, std (n-1), range and standard error of repeated measurements."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("spread of no values")
    std = float(np.std(x, ddof=1)) if x.size > 1 else None
    return Spread(
        n=int(x.size),
        mean=float(np.mean(x)),
        median=float(np.median(x)),
        std=std,
        min=float(np.min(x)),
        max=float(np.max(x)),
        sem=std / math.sqrt(x.size) if std is not None else None,
    )


def ratio_se(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """Standard error of sum(numerators) / sum(denominators) over independent units (eval windows).

    bpb = total nats / ln 2 / total bytes is a ratio of sums, not a mean of per-window bpb, so its standard error
    is the ratio estimator's (delta method): sqrt(N/(N-1) * sum((n_i - R b_i)^2)) / sum(b_i). Windows spread over
    the validation split are taken as independent (they are not: see `neighbour_se`, what `eval/bpb_se` is).
    NaN with fewer than two units."""
    n = np.asarray(numerators, dtype=np.float64)
    b = np.asarray(denominators, dtype=np.float64)
    return ratio_se_from_sums(n.sum(), b.sum(), (n * n).sum(), (n * b).sum(), (b * b).sum(), n.size)


def ratio_se_from_sums(sn: float, sb: float, snn: float, snb: float, sbb: float, count: float) -> float:
    """`ratio_se` from the sums it needs, which add up across ranks (each rank scores its share of the windows):
    sum n, sum b, sum n^2, sum n*b, sum b^2 and the number of units."""
    if count < 2 or sb <= 0:
        return math.nan
    r = sn / sb
    residual = max(snn - 2 * r * snb + r * r * sbb, 0.0)  # sum (n_i - r b_i)^2, rounding kept non-negative
    return math.sqrt(count / (count - 1) * residual) / sb


def neighbour_se(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """Standard error of sum(numerators) / sum(denominators) over windows spread evenly through the text, in text
    order: the systematic-sample estimator, which compares each window with its neighbour.

    Eval windows tile adjacent text from a few long works, so windows near each other are alike; taken as
    independent (`ratio_se`) they overstate how far another evenly spread set of windows (another offset) of the
    same validation text would move the figure. Here the spread comes from differences of neighbouring windows'
    residuals (n_i - R b_i), each pair a stratum: sqrt(N * sum(diff^2) / (2 (N - 1))) / sum(b). It covers the
    choice of windows in this validation text; not another corpus, not another seed. NaN with fewer than two."""
    n = np.asarray(numerators, dtype=np.float64)
    b = np.asarray(denominators, dtype=np.float64)
    dn, db = np.diff(n), np.diff(b)
    return neighbour_se_from_sums(n.sum(), b.sum(), (dn * dn).sum(), (dn * db).sum(), (db * db).sum(), n.size, dn.size)


def neighbour_se_from_sums(
    sn: float, sb: float, dnn: float, dnb: float, dbb: float, count: float, pairs: float
) -> float:
    """`neighbour_se` from sums that add up across ranks (each rank scores every world-th window, in order, so its
    neighbours are near in the text too): sum n, sum b, the sums of squares and products of neighbour differences
    (dn^2, dn*db, db^2), the number of windows and of neighbour pairs."""
    if count < 2 or pairs < 1 or sb <= 0:
        return math.nan
    r = sn / sb
    residual = max(dnn - 2 * r * dnb + r * r * dbb, 0.0)  # sum (dn_i - r db_i)^2, rounding kept non-negative
    return math.sqrt(count * residual / (2 * pairs)) / sb


@dataclass(frozen=True)
class Paired:
    """A minus B, paired: over seeds (`unit` "seeds": the mean per-seed difference, a paired t-test, `sd` the
    standard deviation of the per-seed differences) or over the eval windows two single runs both scored
    (`unit` "windows": the bpb difference, its neighbour-window standard error `se`, `sd` None). `low`/`high`: the
    95% interval; `p`: the two-sided p-value of no difference."""

    n: int
    diff: float
    low: float
    high: float
    p: float
    sd: float | None
    unit: str = "seeds"
    se: float | None = None

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    @property
    def significant(self) -> bool:
        return self.p < ALPHA


def paired(a: Sequence[float], b: Sequence[float]) -> Paired:
    """Paired t-test of A against B (scipy.stats.ttest_rel's): a[i] and b[i] come from the same seed."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"a paired comparison needs two or more pairs, got {x.size} and {y.size} values")
    d = x - y
    sd = float(np.std(d, ddof=1))
    if sd == 0.0:  # identical differences: no spread to test against (scipy would return nan)
        mean = float(d.mean())
        return Paired(int(d.size), mean, mean, mean, 1.0 if mean == 0 else 0.0, 0.0, se=0.0)
    mean, se = float(d.mean()), sd / math.sqrt(d.size)
    low, high, p = _t_test(mean, se, d.size - 1)
    return Paired(int(d.size), mean, low, high, p, sd, se=se)


def _t_test(mean: float, se: float, df: int) -> tuple[float, float, float]:
    """The 95% interval and two-sided p of a t statistic mean / se (scipy.stats.ttest_rel's figures, from scipy's
    t distribution functions directly: the same numbers, fast enough for the simulations in the tests)."""
    from scipy import special

    half = float(special.stdtrit(df, 1 - ALPHA / 2)) * se
    return mean - half, mean + half, float(2 * special.stdtr(df, -abs(mean) / se))


def paired_windows(nats_a: Sequence[float], nats_b: Sequence[float], n_bytes: Sequence[float]) -> Paired:
    """bpb(A) - bpb(B) of two single runs that scored the same windows (per-window summed nats, and the windows'
    bytes, in text order), paired window by window: what the windows do to both alike cancels. The standard error
    is `neighbour_se` of the per-window differences; the test a t with (windows - 1) degrees of freedom. It covers
    eval noise only: one run each measures nothing of what another seed would do."""
    x, y = np.asarray(nats_a, dtype=np.float64), np.asarray(nats_b, dtype=np.float64)
    b = np.asarray(n_bytes, dtype=np.float64)
    if x.shape != y.shape or x.shape != b.shape or x.size < 2:
        raise ValueError(f"a window-paired comparison needs the same two or more windows, got {x.size} and {y.size}")
    diff = float((x - y).sum() / math.log(2) / max(b.sum(), 1.0))
    se = neighbour_se(x - y, b) / math.log(2)
    if not se > 0:  # the same losses window by window (or no spread): nothing to test against
        return Paired(int(x.size), diff, diff, diff, 1.0 if diff == 0 else 0.0, None, "windows", 0.0)
    low, high, p = _t_test(diff, se, x.size - 1)
    return Paired(int(x.size), diff, low, high, p, None, "windows", se)


def holm(pvalues: Mapping[Any, float]) -> dict[Any, float]:
    """Holm's step-down adjusted p-values (a difference is called where the adjusted p < ALPHA): the family-wise
    error stays under ALPHA whatever the number of tests. A p that is nan or None (no test possible) counts as 1."""
    clean = {k: (p if p is not None and math.isfinite(p) else 1.0) for k, p in pvalues.items()}
    out: dict[Any, float] = {}
    running = 0.0
    for i, key in enumerate(sorted(clean, key=clean.get)):
        running = max(running, min(1.0, (len(clean) - i) * clean[key]))
        out[key] = running
    return out


def tied_with_best(
    means: Mapping[str, float], pvalue: Callable[[str, str], float], minimize: bool = True
) -> tuple[str | None, set[str], dict[str, float]]:
    """The best by mean, the names a test cannot tell from it (the best included), and each name's Holm-adjusted
    p against the best.

    The best was picked from the same data, so testing the others against it at ALPHA each calls identical
    configs different far too often (5 configs x 3 seeds: about a quarter of the time). Every pair is tested
    (`pvalue(a, b)`) and Holm adjusts over all of them: the family holds every comparison the pick could have
    made, so identical configs are all called tied in at least 1 - ALPHA of draws."""
    names = [k for k, v in means.items() if v is not None and math.isfinite(v)]
    if not names:
        return None, set(), {}
    best = min(names, key=means.get) if minimize else max(names, key=means.get)
    adjusted = holm({(a, b): pvalue(a, b) for a, b in itertools.combinations(names, 2)})
    against = {(b if a == best else a): p for (a, b), p in adjusted.items() if best in (a, b)}
    return best, {best} | {k for k, p in against.items() if not p < ALPHA}, against


def _power(n: int, sd: float, delta: float) -> float:
    """Power of a two-sided paired t-test with n pairs to find a true mean difference `delta`."""
    from scipy import stats as sps

    df = n - 1
    crit = sps.t.ppf(1 - ALPHA / 2, df)
    nc = abs(delta) / (sd / math.sqrt(n))
    # the lower tail as the upper tail of -nc: scipy's nct.cdf returns nan deep in the tail at df = 1
    low = sps.nct.sf(crit, df, -nc)
    return float(sps.nct.sf(crit, df, nc) + (low if math.isfinite(low) else 0.0))


def seeds_needed(sd: float, delta: float) -> int | None:
    """Pairs a paired t-test needs to find a true difference `delta` with POWER, when per-seed differences
    spread by `sd` (taken as known); None when more than MAX_SEEDS (or delta is 0)."""
    if delta == 0 or not math.isfinite(delta) or not math.isfinite(sd):
        return None
    if sd <= 0:
        return 2
    lo, hi = 2, 2
    while _power(hi, sd, delta) < POWER:
        lo, hi = hi, hi * 2
        if hi > MAX_SEEDS:
            return None
    while lo < hi:  # power grows with n: the smallest n that reaches POWER
        mid = (lo + hi) // 2
        if _power(mid, sd, delta) >= POWER:
            hi = mid
        else:
            lo = mid + 1
    return hi


def seeds_needed_range(sd: float, n: int, delta: float) -> tuple[int | None, int | None]:
    """`seeds_needed` at both ends of the 95% interval of an sd estimated from n pairs (chi-square, n - 1 degrees
    of freedom): with few seeds the sd itself is uncertain, so the seeds a difference needs are a range."""
    from scipy import stats as sps

    df = max(n - 1, 1)
    low_sd = sd * math.sqrt(df / sps.chi2.ppf(1 - ALPHA / 2, df))
    high_sd = sd * math.sqrt(df / sps.chi2.ppf(ALPHA / 2, df))
    return seeds_needed(low_sd, delta), seeds_needed(high_sd, delta)


def detectable_difference(sd: float, n: int) -> float:
    """The smallest true difference n pairs find with POWER when per-seed differences spread by `sd` (taken as
    known); 0 when sd is 0."""
    from scipy import optimize

    if sd <= 0:
        return 0.0
    hi = sd
    while _power(n, sd, hi) < POWER:
        hi *= 2
    return float(optimize.brentq(lambda delta: _power(n, sd, delta) - POWER, 0.0, hi, xtol=sd * 1e-6))


def _num(x: float, digits: int) -> str:
    return f"{x:.{digits}f}"


def _seeds_text(need: int | None) -> str:
    return f"more than {MAX_SEEDS:,}" if need is None else str(need)


def verdict_line(
    name_a: str, name_b: str, result: Paired, metric: str = "bpb", digits: int = 4, family: int = 1
) -> str:
    """One line: "A lower than B by X ± Y bpb (95% CI; p = …, N seeds)" when the test finds a difference, else
    "no difference detectable …" with what N seeds detect and, for a true difference of the observed size, how
    many seeds would (a range: the sd is itself estimated). `result.p` is taken as Holm-adjusted over `family`
    comparisons when family > 1; the interval is the pair's own."""
    if result.unit == "windows":
        return _window_verdict(name_a, name_b, result, metric, digits, family)
    p_text = f"p = {result.p:.2g}" + (f", Holm-adjusted over {family} pairs" if family > 1 else "")
    if result.significant:
        lower, higher = (name_a, name_b) if result.diff < 0 else (name_b, name_a)
        return (
            f"{lower} lower than {higher} by {_num(abs(result.diff), digits)} ± {_num(result.half_width, digits)} "
            f"{metric} (95% CI; {p_text}, {result.n} seeds)"
        )
    line = (
        f"no difference detectable with {result.n} seeds: {name_a} - {name_b} = {_num(result.diff, digits)} "
        f"± {_num(result.half_width, digits)} {metric} (95% CI; {p_text})"
    )
    if not result.sd:
        return line + f"; the {result.n} per-seed differences are all equal: no spread to size more seeds from"
    line += (
        f"; if the per-seed sd were the {_num(result.sd, digits)} observed, {result.n} seeds would detect about "
        f"{_num(detectable_difference(result.sd, result.n), digits)}"
    )
    if result.diff != 0:
        low, high = seeds_needed_range(result.sd, result.n, result.diff)
        line += (
            f"; a true difference of {_num(abs(result.diff), digits)} would need {_seeds_text(low)} to "
            f"{_seeds_text(high)} seeds (over the sd's 95% interval)"
        )
    return line


def _window_verdict(name_a: str, name_b: str, result: Paired, metric: str, digits: int, family: int) -> str:
    p_text = f"p = {result.p:.2g}" + (f", Holm-adjusted over {family} pairs" if family > 1 else "")
    where = f"the same {result.n} eval windows, one run each: eval noise only, not seed noise"
    if result.significant:
        lower, higher = (name_a, name_b) if result.diff < 0 else (name_b, name_a)
        return (
            f"{lower} lower than {higher} by {_num(abs(result.diff), digits)} ± {_num(result.half_width, digits)} "
            f"{metric} (95% CI over {where}; {p_text})"
        )
    return (
        f"no difference beyond eval noise: {name_a} - {name_b} = {_num(result.diff, digits)} ± "
        f"{_num(result.half_width, digits)} {metric} (95% CI over {where}; {p_text})"
    )


def indistinguishable_from_best(
    groups: Mapping[str, Mapping[int, float]], minimize: bool = True
) -> tuple[str | None, set[str]]:
    """The best group by mean and the groups a test cannot tell from it (the best included), Holm over every
    pair (`tied_with_best`).

    `groups`: name -> {seed index: value}. A pair sharing two or more seeds is compared pair by pair on those
    seeds (paired t); otherwise, with two or more values each, by Welch's t. A pair with too few values for either
    cannot be told apart."""
    best, tied, _ = tied_with_best(
        {k: float(np.mean(list(v.values()))) for k, v in groups.items() if v},
        lambda a, b: seed_pvalue(groups[a], groups[b]),
        minimize,
    )
    return best, tied


def seed_pvalue(a: Mapping[int, float], b: Mapping[int, float]) -> float:
    """p of no difference between two configs' {seed index: value}: paired t on shared seeds (two or more),
    else Welch's t, else nan (cannot tell)."""
    from scipy import stats as sps

    shared = sorted(set(a) & set(b))
    if len(shared) >= 2:
        return paired([a[s] for s in shared], [b[s] for s in shared]).p
    if len(a) >= 2 and len(b) >= 2:
        return float(sps.ttest_ind(list(a.values()), list(b.values()), equal_var=False).pvalue)
    return math.nan


def windows_tied_with_best(
    runs: Mapping[str, tuple[np.ndarray, np.ndarray]], minimize: bool = True
) -> tuple[str | None, set[str], dict[str, float]]:
    """Single runs that scored the same windows (name -> (per-window nats, per-window bytes)): the best by bpb, the
    runs a window-paired test (`paired_windows`, Holm over every pair) cannot tell from it, and their adjusted p.
    Eval noise only: a run called worse may still be within what another seed would do."""
    bpb = {k: float(n.sum() / math.log(2) / max(b.sum(), 1)) for k, (n, b) in runs.items()}
    return tied_with_best(bpb, lambda a, b: paired_windows(runs[a][0], runs[b][0], runs[a][1]).p, minimize)
