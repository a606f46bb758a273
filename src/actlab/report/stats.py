"""Summary statistics and significance tests for results over random seeds.

* mean, sample standard deviation (``ddof = 1``) and the Student-t confidence interval
  ``mean ± t_{1-(1-c)/2, n-1} · s / sqrt(n)``, clipped to the metric's range when one is given
  (``bounds``: accuracy and mIoU cannot leave [0, 1] or [0, 100], a loss cannot go below 0). A
  clipped interval is the t-interval intersected with the range: it covers the true mean at least
  as often as the t-interval (which assumes normal seed-to-seed noise), and it is shorter only on
  the side where the t-interval claimed impossible values;
* Welch's unequal-variance t-test (Welch 1947): ``t = (m_a - m_b) / sqrt(s_a²/n_a + s_b²/n_b)``
  with Welch–Satterthwaite degrees of freedom
  ``ν = (s_a²/n_a + s_b²/n_b)² / ((s_a²/n_a)²/(n_a-1) + (s_b²/n_b)²/(n_b-1))``;
* the paired t-test over shared seeds: ``t = mean(d) / (sd(d) / sqrt(n))``, ``d = a - b``,
  ``ν = n - 1``;
* Cohen's d (Cohen 1988): ``(m_a - m_b) / s_pooled`` with
  ``s_pooled² = ((n_a-1)s_a² + (n_b-1)s_b²) / (n_a+n_b-2)``; for paired samples ``d_z = mean(d) /
  sd(d)``.

All p-values are two-sided. Degenerate cases are decided rather than returned as NaN: when both
samples have zero spread (e.g. deterministic runs) the test reports ``p = 1`` for equal means and
``p = 0`` (``t = ±inf``) for different means. A spread at the level of floating-point rounding
(below ``1e-12`` of the values' magnitude) counts as zero: accuracies on a finite test set are
multiples of 1/N, and differences such as ``0.98886 − 0.98607`` are equal for every seed up to
rounding, which would otherwise give ``t ≈ 1e13``.

:func:`compare` does not decide a paired comparison whose differences all have the same value
(zero spread) by the degenerate t-test: "better by exactly one test image in each of 5 seeds"
is not evidence at ``p = 0``. It uses the exact two-sided sign test instead
(:func:`sign_test`: ``p = min(1, 2·P[Bin(m, ½) ≤ min(m₊, m₋)])`` over the ``m`` non-zero
differences), whose smallest possible p-value with 5 seeds is 0.0625.

Multiple comparisons (:func:`adjust_pvalues`): a candidate compared with 9 baselines in several
cells makes dozens of tests, and at level 0.05 about one in twenty of them comes out
"significant" by chance. ``"holm"`` (Holm 1979) controls the family-wise error rate: with the
``m`` p-values sorted, ``p̃_(i) = max_{j ≤ i} min(1, (m − j + 1)·p_(j))``. ``"bh"``
(Benjamini & Hochberg 1995) controls the false discovery rate:
``p̃_(i) = min_{j ≥ i} min(1, m·p_(j)/j)``. A comparison is significant when ``p̃ < alpha``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as _st

__all__ = [
    "Summary",
    "TestResult",
    "Comparison",
    "mean",
    "std",
    "confidence_interval",
    "summarize",
    "welch_t_test",
    "paired_t_test",
    "sign_test",
    "cohens_d",
    "compare",
    "adjust_pvalues",
    "CORRECTIONS",
    "clip_interval",
]

TestName = Literal["auto", "welch", "paired"]
Correction = Literal["holm", "bh", "none"]
#: multiple-comparison corrections of :func:`adjust_pvalues`
CORRECTIONS = ("holm", "bh", "none")
Bounds = tuple[float, float] | None


def _as_array(values: Iterable[float], what: str = "values", min_n: int = 1) -> np.ndarray:
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a flat sequence of numbers, got shape {arr.shape}")
    if arr.size < min_n:
        raise ValueError(f"{what} needs at least {min_n} value(s), got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains non-finite numbers: {arr.tolist()}")
    return arr


#: spreads below this fraction of the values' magnitude are rounding noise, i.e. zero
_RELATIVE_NOISE = 1e-12


def _noise(*arrays: np.ndarray) -> float:
    """Rounding-noise level of a spread computed from ``arrays``."""
    return _RELATIVE_NOISE * max(float(np.abs(a).max()) for a in arrays)


def _check_level(confidence: float, name: str = "confidence") -> float:
    if not (isinstance(confidence, (int, float)) and 0.0 < confidence < 1.0):
        raise ValueError(f"{name} must be a number in (0, 1), got {confidence!r}")
    return float(confidence)


def mean(values: Iterable[float]) -> float:
    """Arithmetic mean."""
    return float(_as_array(values).mean())


def std(values: Iterable[float]) -> float:
    """Sample standard deviation (``ddof = 1``); NaN for a single value."""
    arr = _as_array(values)
    return float(arr.std(ddof=1)) if arr.size > 1 else math.nan


def _check_bounds(bounds: Bounds) -> Bounds:
    if bounds is None:
        return None
    lo, hi = (float(b) for b in bounds)
    if math.isnan(lo) or math.isnan(hi) or not lo < hi:
        raise ValueError(f"bounds must be (low, high) with low < high, got {bounds!r}")
    return (lo, hi)


def clip_interval(low: float, high: float, bounds: Bounds) -> tuple[float, float]:
    """``[low, high] ∩ bounds`` (unchanged for ``bounds=None`` or NaN ends)."""
    b = _check_bounds(bounds)
    if b is None or math.isnan(low) or math.isnan(high):
        return (low, high)
    return (min(max(low, b[0]), b[1]), max(min(high, b[1]), b[0]))


def confidence_interval(
    values: Iterable[float], confidence: float = 0.95, bounds: Bounds = None
) -> tuple[float, float]:
    """Student-t interval ``mean ± t_{(1+c)/2, n-1} · s/√n``, intersected with ``bounds``
    (``(low, high)``, e.g. ``(0, 1)`` for an accuracy) when given; (NaN, NaN) for one value."""
    _check_level(confidence)
    arr = _as_array(values)
    b = _check_bounds(bounds)
    if b is not None and (arr.min() < b[0] or arr.max() > b[1]):
        raise ValueError(f"values {arr.tolist()} lie outside the bounds {b}")
    m = float(arr.mean())
    if arr.size < 2:
        return (math.nan, math.nan)
    tq = float(_st.t.ppf(0.5 + confidence / 2.0, arr.size - 1))
    half = tq * float(arr.std(ddof=1)) / math.sqrt(arr.size)
    return clip_interval(m - half, m + half, b)


@dataclass(frozen=True)
class Summary:
    """n, mean, sample std and the Student-t confidence interval of a sample (clipped to
    ``bounds`` when they are set)."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    confidence: float = 0.95
    bounds: Bounds = None

    @property
    def ci_half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2.0


def summarize(
    values: Iterable[float], confidence: float = 0.95, bounds: Bounds = None
) -> Summary:
    """:class:`Summary` of ``values`` (std and interval are NaN when n = 1); the interval is
    clipped to ``bounds`` (see :func:`confidence_interval`)."""
    arr = _as_array(values)
    lo, hi = confidence_interval(arr, confidence, bounds)
    return Summary(int(arr.size), float(arr.mean()), std(arr), lo, hi, confidence,
                   _check_bounds(bounds))


@dataclass(frozen=True)
class TestResult:
    """Outcome of a two-sided test; ``test`` is ``"welch"``, ``"paired"`` (t-tests) or
    ``"sign"`` (exact sign test, see :func:`sign_test`)."""

    __test__ = False  # not a pytest test class

    test: str
    statistic: float
    df: float
    pvalue: float
    mean_difference: float
    n_a: int
    n_b: int


def _t_pvalue(t: float, df: float, diff: float) -> tuple[float, float]:
    """(t, p) with the zero-spread cases decided: equal means -> p = 1, else p = 0."""
    if math.isnan(t):  # 0/0: zero spread and zero difference
        return 0.0, 1.0
    if math.isinf(t):
        return math.copysign(math.inf, diff), 0.0
    return t, float(2.0 * _st.t.sf(abs(t), df))


def welch_t_test(a: Iterable[float], b: Iterable[float]) -> TestResult:
    """Welch's two-sided t-test of mean(a) = mean(b) without assuming equal variances.

    Needs at least 2 values per sample. See the module docstring for the formulas.
    """
    x = _as_array(a, "a", min_n=2)
    y = _as_array(b, "b", min_n=2)
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    diff = float(x.mean() - y.mean())
    se2 = va + vb
    if math.sqrt(se2) <= _noise(x, y):
        t = math.nan if abs(diff) <= _noise(x, y) else math.copysign(math.inf, diff)
        df = float(x.size + y.size - 2)
    else:
        t = diff / math.sqrt(se2)
        df = se2**2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
    t, p = _t_pvalue(t, df, diff)
    return TestResult("welch", t, float(df), p, diff, int(x.size), int(y.size))


def paired_t_test(a: Iterable[float], b: Iterable[float]) -> TestResult:
    """Paired two-sided t-test on the differences ``a[i] - b[i]`` (same seeds, same order)."""
    x = _as_array(a, "a", min_n=2)
    y = _as_array(b, "b", min_n=2)
    if x.size != y.size:
        raise ValueError(f"paired test needs equally many values, got {x.size} and {y.size}")
    d = x - y
    diff = float(d.mean())
    sd = float(d.std(ddof=1))
    if sd <= _noise(x, y):
        t = math.nan if abs(diff) <= _noise(x, y) else math.copysign(math.inf, diff)
    else:
        t = diff / (sd / math.sqrt(d.size))
    t, p = _t_pvalue(t, float(d.size - 1), diff)
    return TestResult("paired", t, float(d.size - 1), p, diff, int(x.size), int(y.size))


def sign_test(a: Iterable[float], b: Iterable[float]) -> TestResult:
    """Exact two-sided sign test of the paired differences ``a[i] - b[i]``.

    Zero differences (up to rounding) are dropped; with ``m₊`` positive and ``m₋`` negative
    ones, ``p = min(1, 2·P[Bin(m₊+m₋, ½) ≤ min(m₊, m₋)])`` (1 when every difference is zero).
    ``statistic`` is ``m₊ − m₋`` and ``df`` the number of non-zero differences.
    """
    x = _as_array(a, "a", min_n=1)
    y = _as_array(b, "b", min_n=1)
    if x.size != y.size:
        raise ValueError(f"sign test needs equally many values, got {x.size} and {y.size}")
    d = x - y
    tol = _noise(x, y)
    pos, neg = int((d > tol).sum()), int((d < -tol).sum())
    m = pos + neg
    p = 1.0 if m == 0 else min(1.0, 2.0 * float(_st.binom.cdf(min(pos, neg), m, 0.5)))
    return TestResult("sign", float(pos - neg), float(m), p, float(d.mean()), int(x.size),
                      int(y.size))


def cohens_d(a: Iterable[float], b: Iterable[float], paired: bool = False) -> float:
    """Effect size of mean(a) - mean(b) in standard deviations.

    Independent samples: pooled-SD Cohen's d. ``paired=True``: ``d_z = mean(d)/sd(d)``.
    Zero spread gives 0 for equal means and ±inf otherwise.
    """
    x = _as_array(a, "a", min_n=2)
    y = _as_array(b, "b", min_n=2)
    if paired:
        if x.size != y.size:
            raise ValueError(f"paired d needs equally many values, got {x.size} and {y.size}")
        d = x - y
        num, den = float(d.mean()), float(d.std(ddof=1))
    else:
        num = float(x.mean() - y.mean())
        pooled = ((x.size - 1) * x.var(ddof=1) + (y.size - 1) * y.var(ddof=1)) / (
            x.size + y.size - 2
        )
        den = math.sqrt(pooled)
    if den <= _noise(x, y):
        return 0.0 if abs(num) <= _noise(x, y) else math.copysign(math.inf, num)
    return num / den


@dataclass(frozen=True)
class Comparison:
    """Candidate vs baseline in one cell: ``outcome`` is ``"win"``, ``"tie"`` or ``"loss"``.

    ``pvalue`` is the p-value the outcome was decided on: the test's own
    (``result.pvalue``), or after a multiple-comparison ``correction`` (see
    :func:`adjust_pvalues`).
    """

    outcome: str
    result: TestResult
    effect_size: float
    alpha: float
    higher_is_better: bool
    correction: str = "none"
    adjusted_pvalue: float | None = None

    @property
    def pvalue(self) -> float:
        return self.result.pvalue if self.adjusted_pvalue is None else self.adjusted_pvalue

    def corrected(self, pvalue: float, correction: str) -> Comparison:
        """This comparison decided again on the adjusted p-value ``pvalue``."""
        outcome = _outcome(pvalue, self.result.mean_difference, self.alpha,
                           self.higher_is_better)
        return Comparison(outcome, self.result, self.effect_size, self.alpha,
                          self.higher_is_better, correction, float(pvalue))


def _outcome(p: float, diff: float, alpha: float, higher_is_better: bool) -> str:
    if p < alpha and diff != 0.0:
        return "win" if (diff > 0) == higher_is_better else "loss"
    return "tie"


def compare(
    a: Mapping[Hashable, float],
    b: Mapping[Hashable, float],
    *,
    higher_is_better: bool = True,
    alpha: float = 0.05,
    test: TestName = "auto",
) -> Comparison:
    """Decide whether sample ``a`` is significantly better than, not different from, or worse
    than ``b``.

    ``a`` and ``b`` map seed -> final metric. ``test="auto"`` uses the paired t-test when both
    have the same set of seeds (at least two) and Welch's test otherwise; ``"paired"`` pairs the
    shared seeds (at least two required); ``"welch"`` ignores seeds. The outcome is ``"tie"``
    unless ``p < alpha``, then ``"win"``/``"loss"`` by the sign of the difference and
    ``higher_is_better``. A paired comparison whose differences are all equal and non-zero is
    decided by :func:`sign_test` instead (the t statistic would be infinite).
    """
    _check_level(alpha, "alpha")
    if test not in ("auto", "welch", "paired"):
        raise ValueError(f"test must be 'auto', 'welch' or 'paired', got {test!r}")
    shared = sorted(set(a) & set(b))
    use_paired = test == "paired" or (
        test == "auto" and set(a) == set(b) and len(shared) >= 2
    )
    if use_paired:
        if len(shared) < 2:
            raise ValueError(f"paired test needs at least 2 shared seeds, got {shared}")
        xs = [a[s] for s in shared]
        ys = [b[s] for s in shared]
        res = paired_t_test(xs, ys)
        d = cohens_d(xs, ys, paired=True)
        if math.isinf(res.statistic):  # every difference equal: the t-test is degenerate
            res = sign_test(xs, ys)
    else:
        res = welch_t_test(list(a.values()), list(b.values()))
        d = cohens_d(list(a.values()), list(b.values()))
    outcome = _outcome(res.pvalue, res.mean_difference, alpha, higher_is_better)
    return Comparison(outcome, res, d, float(alpha), higher_is_better)


def adjust_pvalues(pvalues: Iterable[float], method: Correction = "holm") -> list[float]:
    """Multiple-comparison adjusted p-values, in the input order.

    ``"holm"``: Holm's step-down (family-wise error rate); ``"bh"``: Benjamini–Hochberg
    step-up (false discovery rate); ``"none"``: unchanged. Formulas in the module docstring.
    Rejecting where the adjusted value is below ``alpha`` is the procedure at level ``alpha``.
    """
    if method not in CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {method!r}")
    p = np.asarray(list(pvalues), dtype=np.float64)
    if p.ndim != 1 or np.any(np.isnan(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError(f"p-values must be a flat sequence of numbers in [0, 1], got {p}")
    m = p.size
    if m == 0 or method == "none":
        return p.tolist()
    order = np.argsort(p, kind="stable")
    ps = p[order]
    rank = np.arange(1, m + 1)
    if method == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (m - rank + 1) * ps))
    else:
        adj = np.minimum.accumulate(np.minimum(1.0, m * ps / rank)[::-1])[::-1]
    out = np.empty(m)
    out[order] = adj
    return out.tolist()
