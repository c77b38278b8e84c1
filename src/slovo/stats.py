"""The statistics every comparison in slovo uses: spread of repeats, the standard error of an eval, paired
differences over seeds with their interval and p-value, the verdict line, seeds needed, and which configs are
indistinguishable from the best.

One module so that `slovo compare`, sweep leaderboards, tune, the report and bench/ say the same thing about
the same numbers. The tests are scipy's (paired t, Welch t); this module only chooses them and words the answer.

Two sources of noise, and which one a figure carries:
- eval noise: a run's bpb is an estimate over a sample of text (its eval windows); `ratio_se` is its standard
  error. It says how far another sample of text could move the number, not how far another seed could.
- seed noise: the same config trained with another seed (another init and data order) lands elsewhere; only
  repeats measure it. `paired` compares two configs trained with the same seeds, pair by pair, which removes
  what the seed does to both alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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
    the validation split are taken as independent. NaN with fewer than two units."""
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


@dataclass(frozen=True)
class Paired:
    """A minus B over paired seeds: the mean difference, its 95% interval, the p-value of a paired t-test
    (no difference), and the standard deviation of the per-seed differences."""

    n: int
    diff: float
    low: float
    high: float
    p: float
    sd: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    @property
    def significant(self) -> bool:
        return self.p < ALPHA


def paired(a: Sequence[float], b: Sequence[float]) -> Paired:
    """Paired t-test of A against B (scipy.stats.ttest_rel): a[i] and b[i] come from the same seed."""
    from scipy import stats as sps

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"a paired comparison needs two or more pairs, got {x.size} and {y.size} values")
    d = x - y
    sd = float(np.std(d, ddof=1))
    if sd == 0.0:  # identical differences: no spread to test against (scipy would return nan)
        mean = float(d.mean())
        return Paired(int(d.size), mean, mean, mean, 1.0 if mean == 0 else 0.0, 0.0)
    res = sps.ttest_rel(x, y)
    ci = res.confidence_interval(1 - ALPHA)
    return Paired(int(d.size), float(d.mean()), float(ci.low), float(ci.high), float(res.pvalue), sd)


def _power(n: int, sd: float, delta: float) -> float:
    """Power of a two-sided paired t-test with n pairs to find a true mean difference `delta`."""
    from scipy import stats as sps

    df = n - 1
    crit = sps.t.ppf(1 - ALPHA / 2, df)
    nc = abs(delta) / (sd / math.sqrt(n))
    return float(sps.nct.sf(crit, df, nc) + sps.nct.cdf(-crit, df, nc))


def seeds_needed(sd: float, delta: float) -> int | None:
    """Pairs a paired t-test needs to find a true difference `delta` with POWER, when per-seed differences
    spread by `sd`; None when more than MAX_SEEDS (or delta is 0)."""
    if delta == 0 or not math.isfinite(delta):
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


def detectable_difference(sd: float, n: int) -> float:
    """The smallest true difference n pairs find with POWER when per-seed differences spread by `sd`."""
    from scipy import optimize

    if sd <= 0:
        return 0.0
    hi = sd
    while _power(n, sd, hi) < POWER:
        hi *= 2
    return float(optimize.brentq(lambda delta: _power(n, sd, delta) - POWER, 0.0, hi, xtol=sd * 1e-6))


def _num(x: float, digits: int) -> str:
    return f"{x:.{digits}f}"


def verdict_line(name_a: str, name_b: str, result: Paired, metric: str = "bpb", digits: int = 4) -> str:
    """One line: "A lower by X ± Y bpb (p = …, N seeds)" when the paired test finds a difference, else
    "no difference detectable with N seeds (…); about M seeds would detect Δ"."""
    if result.significant:
        lower, higher = (name_a, name_b) if result.diff < 0 else (name_b, name_a)
        return (
            f"{lower} lower than {higher} by {_num(abs(result.diff), digits)} ± {_num(result.half_width, digits)} "
            f"{metric} (95% CI; p = {result.p:.2g}, {result.n} seeds)"
        )
    line = (
        f"no difference detectable with {result.n} seeds: {name_a} - {name_b} = {_num(result.diff, digits)} "
        f"± {_num(result.half_width, digits)} {metric} (95% CI; p = {result.p:.2g})"
    )
    if result.sd > 0:
        line += f"; {result.n} seeds detect about {_num(detectable_difference(result.sd, result.n), digits)}"
        need = seeds_needed(result.sd, result.diff)
        if need is None:
            line += f"; more than {MAX_SEEDS} seeds would be needed to detect {_num(abs(result.diff), digits)}"
        else:
            line += f"; about {need} seeds would detect {_num(abs(result.diff), digits)}"
    return line


def indistinguishable_from_best(
    groups: Mapping[str, Mapping[int, float]], minimize: bool = True
) -> tuple[str | None, set[str]]:
    """The best group by mean and the groups a test cannot tell from it (the best included).

    `groups`: name -> {seed index: value}. A group sharing two or more seeds with the best is compared pair by
    pair on those seeds (paired t); otherwise, with two or more values each, by Welch's t. A group with too few
    values for either cannot be told apart and counts as indistinguishable."""
    from scipy import stats as sps

    means = {k: float(np.mean(list(v.values()))) for k, v in groups.items() if v}
    if not means:
        return None, set()
    best = min(means, key=means.get) if minimize else max(means, key=means.get)
    tied = {best}
    for name, values in groups.items():
        if name == best or not values:
            continue
        shared = sorted(set(values) & set(groups[best]))
        if len(shared) >= 2:
            p = paired([values[s] for s in shared], [groups[best][s] for s in shared]).p
        elif len(values) >= 2 and len(groups[best]) >= 2:
            p = float(sps.ttest_ind(list(values.values()), list(groups[best].values()), equal_var=False).pvalue)
        else:
            p = 1.0
        if not p < ALPHA:  # nan (no spread on either side) counts as not told apart
            tied.add(name)
    return best, tied


def within_noise(a: float, se_a: float, b: float, se_b: float) -> bool:
    """Single runs: True when |a - b| is under the 95% band of their eval standard errors combined
    (1.96 * sqrt(se_a^2 + se_b^2)), so eval noise alone could make it. It says nothing about seed noise, which
    only repeats measure; a difference above it may still be a seed's."""
    if not all(math.isfinite(v) for v in (a, se_a, b, se_b)):
        return False
    return abs(a - b) < noise_floor(se_a, se_b)


def noise_floor(se_a: float, se_b: float) -> float:
    """The difference two single evals with these standard errors must exceed to be more than eval noise."""
    from scipy import stats as sps

    return float(sps.norm.ppf(1 - ALPHA / 2) * math.hypot(se_a, se_b))
