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
