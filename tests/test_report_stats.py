"""report.stats against scipy.stats on fixed numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from actlab.report import stats

A = [0.912, 0.918, 0.905, 0.921, 0.915]
B = [0.901, 0.899, 0.910, 0.893, 0.904, 0.897]
C = [0.913, 0.909, 0.917, 0.911, 0.914]  # same length as A (paired)


def test_mean_std():
    assert stats.mean(A) == pytest.approx(np.mean(A), rel=1e-15)
    assert stats.std(A) == pytest.approx(st.tstd(A), rel=1e-12)
    assert math.isnan(stats.std([1.0]))


@pytest.mark.parametrize("conf", [0.95, 0.9, 0.99])
def test_confidence_interval_matches_scipy(conf):
    lo, hi = stats.confidence_interval(B, conf)
    ref = st.t.interval(conf, len(B) - 1, loc=np.mean(B), scale=st.sem(B))
    assert (lo, hi) == pytest.approx(ref, rel=1e-12)
    s = stats.summarize(B, conf)
    assert (s.n, s.ci_low, s.ci_high) == (6, lo, hi)
    assert s.ci_half_width == pytest.approx((ref[1] - ref[0]) / 2)


def test_confidence_interval_known_value():
    # n = 4, mean 2.5, s = sqrt(5/3), t_{0.975, 3} = 3.182446305284263
    lo, hi = stats.confidence_interval([1, 2, 3, 4])
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2
    assert (lo, hi) == pytest.approx((2.5 - half, 2.5 + half), rel=1e-12)


def test_single_value_summary_is_nan():
    s = stats.summarize([0.5])
    assert s.n == 1 and s.mean == 0.5
    assert math.isnan(s.std) and math.isnan(s.ci_low) and math.isnan(s.ci_high)


def test_welch_matches_scipy():
    r = stats.welch_t_test(A, B)
    ref = st.ttest_ind(A, B, equal_var=False)
    assert r.test == "welch"
    assert r.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert r.pvalue == pytest.approx(ref.pvalue, rel=1e-10)
    assert r.df == pytest.approx(ref.df, rel=1e-12)
    assert r.mean_difference == pytest.approx(np.mean(A) - np.mean(B))
    assert (r.n_a, r.n_b) == (5, 6)


def test_paired_matches_scipy():
    r = stats.paired_t_test(A, C)
    ref = st.ttest_rel(A, C)
    assert r.test == "paired"
    assert r.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert r.pvalue == pytest.approx(ref.pvalue, rel=1e-10)
    assert r.df == 4


def test_paired_differs_from_welch_on_correlated_data():
    base = np.array([0.80, 0.85, 0.90, 0.82, 0.88])
    a, b = base + 0.01, base  # constant shift + large seed-to-seed spread
    a = a + np.array([0.001, -0.001, 0.0005, 0.0, -0.0005])
    assert stats.paired_t_test(a, b).pvalue < 1e-3
    assert stats.welch_t_test(a, b).pvalue > 0.3


def test_cohens_d_against_student_t():
    # For independent samples, Student's t = d * sqrt(na*nb/(na+nb)).
    d = stats.cohens_d(A, B)
    t = st.ttest_ind(A, B, equal_var=True).statistic
    assert d * math.sqrt(len(A) * len(B) / (len(A) + len(B))) == pytest.approx(t, rel=1e-12)
    # Paired: t = d_z * sqrt(n).
    dz = stats.cohens_d(A, C, paired=True)
    assert dz * math.sqrt(len(A)) == pytest.approx(st.ttest_rel(A, C).statistic, rel=1e-12)


def test_zero_spread_cases_are_decided():
    same = stats.welch_t_test([1.0, 1.0], [1.0, 1.0])
    assert same.pvalue == 1.0 and same.statistic == 0.0
    diff = stats.welch_t_test([2.0, 2.0], [1.0, 1.0])
    assert diff.pvalue == 0.0 and diff.statistic == math.inf
    assert stats.paired_t_test([1.0, 2.0], [2.0, 3.0]).statistic == -math.inf
    assert stats.cohens_d([1.0, 1.0], [1.0, 1.0]) == 0.0


def test_bad_input_errors():
    with pytest.raises(ValueError, match="at least 2"):
        stats.welch_t_test([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="equally many"):
        stats.paired_t_test([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="non-finite"):
        stats.mean([1.0, float("nan")])
    with pytest.raises(ValueError, match="confidence"):
        stats.confidence_interval([1.0, 2.0], 1.5)
    with pytest.raises(ValueError, match="alpha"):
        stats.compare({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0}, alpha=0)
    with pytest.raises(ValueError, match="test must be"):
        stats.compare({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0}, test="mannwhitney")


def test_compare_picks_test_and_direction():
    a = dict(enumerate(A))
    c = dict(enumerate(C))
    b = {i + 10: v for i, v in enumerate(B)}  # disjoint seeds -> Welch
    res = stats.compare(a, b)
    assert res.result.test == "welch" and res.outcome == "win"
    assert stats.compare(a, b, higher_is_better=False).outcome == "loss"
    assert stats.compare(b, a).outcome == "loss"
    assert stats.compare(a, c).result.test == "paired"
    assert stats.compare(a, c, test="welch").result.test == "welch"
    # A vs C are close: not significant at the default alpha
    assert stats.compare(a, c).outcome == "tie"
    # alpha decides: the Welch p for A vs B
    p = st.ttest_ind(A, B, equal_var=False).pvalue
    assert stats.compare(a, b, alpha=p / 2).outcome == "tie"
    with pytest.raises(ValueError, match="shared seeds"):
        stats.compare(a, b, test="paired")


def test_sign_test_matches_scipy_binomtest():
    a = [0.9, 0.8, 0.85, 0.7, 0.95, 0.6, 0.91]
    b = [0.8, 0.81, 0.80, 0.6, 0.90, 0.6, 0.90]  # 5 positive, 1 negative, 1 zero difference
    res = stats.sign_test(a, b)
    assert res.test == "sign" and res.df == 6.0 and res.statistic == 4.0
    assert res.pvalue == pytest.approx(st.binomtest(5, 6, 0.5).pvalue, rel=1e-12)
    assert stats.sign_test([1.0, 2.0], [1.0, 2.0]).pvalue == 1.0
    with pytest.raises(ValueError, match="equally many"):
        stats.sign_test([1.0], [1.0, 2.0])


# Final test accuracies of one real digits run (360 test images): ASH beat Mish by exactly one
# image for every seed, so the differences are equal up to rounding (spread ~1e-17).
ASH_DIGITS = [0.9888579387186629, 0.9832869080779945, 0.9916434540389972, 0.9916434540389972,
              0.9860724233983287]
MISH_DIGITS = [0.9860724233983287, 0.9805013927576601, 0.9888579387186629, 0.9888579387186629,
               0.9832869080779945]


def test_rounding_noise_counts_as_zero_spread():
    diffs = np.subtract(ASH_DIGITS, MISH_DIGITS)
    assert 0.0 < np.std(diffs, ddof=1) < 1e-15  # the raw spread is rounding noise, not zero
    assert stats.paired_t_test(ASH_DIGITS, MISH_DIGITS).statistic == math.inf
    assert stats.cohens_d(ASH_DIGITS, MISH_DIGITS, paired=True) == math.inf
    assert stats.welch_t_test([0.1 + 0.2, 0.3], [0.3, 0.3]).pvalue == 1.0


def test_compare_decides_equal_paired_differences_by_the_sign_test():
    cmp_ = stats.compare(dict(enumerate(ASH_DIGITS)), dict(enumerate(MISH_DIGITS)))
    assert cmp_.result.test == "sign" and cmp_.outcome == "tie"
    assert cmp_.result.pvalue == pytest.approx(0.0625)  # 2 / 2**5: 5 of 5 seeds better
    # with 6 seeds all better by the same amount the sign test reaches p = 0.03125 < 0.05
    six = stats.compare({s: 1.0 + s for s in range(6)}, {s: 0.5 + s for s in range(6)})
    assert six.result.test == "sign" and six.outcome == "win"
    assert six.result.pvalue == pytest.approx(0.03125)
    # differences that vary are still decided by the paired t-test
    varied = stats.compare({0: 1.0, 1: 2.0, 2: 3.5}, {0: 0.5, 1: 1.0, 2: 2.0})
    assert varied.result.test == "paired"
    assert varied.result.pvalue == pytest.approx(
        st.ttest_rel([1.0, 2.0, 3.5], [0.5, 1.0, 2.0]).pvalue, rel=1e-10)


# -- intervals clipped to the metric's range ---------------------------------------------------
@pytest.mark.parametrize("values", [[0.99, 0.80], [0.995, 0.999, 0.97], [0.02, 0.0, 0.25]])
def test_interval_clipped_to_range_matches_scipy(values):
    ref_lo, ref_hi = st.t.interval(0.95, len(values) - 1, loc=np.mean(values),
                                   scale=st.sem(values))
    assert ref_lo < 0.0 or ref_hi > 1.0  # the plain t-interval leaves [0, 1] here
    lo, hi = stats.confidence_interval(values, 0.95, bounds=(0.0, 1.0))
    assert (lo, hi) == pytest.approx(tuple(np.clip([ref_lo, ref_hi], 0.0, 1.0)), rel=1e-12)
    s = stats.summarize(values, bounds=(0.0, 1.0))
    assert (s.ci_low, s.ci_high, s.bounds) == (lo, hi, (0.0, 1.0))
    # the example: two seeds with mean 92.06 % gave [76.13, 107.99]
    lo, hi = stats.confidence_interval([90.806, 93.314], bounds=(0.0, 100.0))
    assert hi == 100.0 and lo == pytest.approx(76.13, abs=0.01)


def test_interval_inside_range_is_unchanged_and_bad_bounds_raise():
    assert stats.confidence_interval(A, bounds=(0.0, 1.0)) == stats.confidence_interval(A)
    assert stats.confidence_interval(A, bounds=(0.0, math.inf)) == stats.confidence_interval(A)
    with pytest.raises(ValueError, match="outside the bounds"):
        stats.confidence_interval([0.5, 1.5], bounds=(0.0, 1.0))
    with pytest.raises(ValueError, match="low < high"):
        stats.confidence_interval(A, bounds=(1.0, 0.0))


# -- multiple-comparison corrections -----------------------------------------------------------
def _holm_naive(p):
    """Holm's step-down written from the definition: reject H_(1..k) while
    p_(k) <= alpha / (m - k + 1); the adjusted p is the smallest alpha that rejects."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out = [0.0] * m
    running = 0.0
    for k, i in enumerate(order, start=1):
        running = max(running, min(1.0, (m - k + 1) * p[i]))
        out[i] = running
    return out


def _bh_naive(p):
    """BH adjusted p: min over j >= rank of m p_(j) / j (computed with a double loop)."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    ps = [p[i] for i in order]
    out = [0.0] * m
    for r in range(m):
        out[order[r]] = min(min(1.0, m * ps[j] / (j + 1)) for j in range(r, m))
    return out


P = [0.01, 0.04, 0.03, 0.005, 0.20, 0.04, 0.9, 0.0]


def test_holm_matches_a_naive_implementation():
    adj = stats.adjust_pvalues(P, "holm")
    assert adj == pytest.approx(_holm_naive(P), abs=1e-15)
    # rejection at 0.05 equals the step-down procedure itself
    m, order = len(P), np.argsort(P, kind="stable")
    reject = np.zeros(m, bool)
    for k, i in enumerate(order, start=1):
        if P[i] > 0.05 / (m - k + 1):
            break
        reject[i] = True
    assert [a <= 0.05 for a in adj] == reject.tolist()


def test_bh_matches_scipy_and_a_naive_implementation():
    adj = stats.adjust_pvalues(P, "bh")
    assert adj == pytest.approx(_bh_naive(P), abs=1e-15)
    assert adj == pytest.approx(st.false_discovery_control(P, method="bh").tolist(), abs=1e-12)


def test_no_correction_and_bad_input():
    assert stats.adjust_pvalues(P, "none") == P
    assert stats.adjust_pvalues([], "holm") == []
    with pytest.raises(ValueError, match="correction must be one of"):
        stats.adjust_pvalues(P, "bonferroni")
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        stats.adjust_pvalues([0.5, 1.5])


def test_corrected_comparison_is_decided_on_the_adjusted_p():
    cmp_ = stats.compare(dict(enumerate(A)), dict(enumerate(C)))
    assert cmp_.outcome == "tie" or cmp_.result.pvalue < 0.05
    win = stats.compare(dict(enumerate(A)), dict(enumerate(B)))
    assert win.outcome == "win" and win.pvalue == win.result.pvalue
    again = win.corrected(0.2, "holm")
    assert again.outcome == "tie" and again.pvalue == 0.2 and again.result is win.result
    assert win.corrected(0.001, "bh").outcome == "win"
