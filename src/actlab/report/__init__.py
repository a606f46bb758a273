"""Statistics, tables, figures and the results page, computed from the results store.

    >>> from actlab.report import load_runs, summarize_runs, win_tie_loss
    >>> runs = load_runs("actlab-results/results.sqlite", study="activations")
    >>> print(summarize_runs(runs).format("md"))
    >>> print(win_tie_loss(runs, "sau", ["relu", "gelu"], alpha=0.05))

Modules: ``load`` (read finished runs with sqlite3), ``stats`` (CI, Welch / paired t-tests,
Cohen's d), ``tables`` (summary and win/tie/loss tables), ``curves`` (per-epoch curve data),
``plots`` (matplotlib figures; optional dependency), ``figures`` (standard figure files),
``results_page`` (Markdown page) and ``cli`` (``actlab report`` / ``actlab plot``).
"""

from actlab.report.cli import add_plot_arguments, add_report_arguments, run_plot, run_report
from actlab.report.curves import Curve, epochs_to_reach, history_curve, layer_stat_curves
from actlab.report.load import RunRecord, StoreError, load_runs
from actlab.report.plots import activation_curves, ash_gate_curves, ash_gate_params
from actlab.report.results_page import Claim, write_results_page
from actlab.report.stats import (
    Summary,
    TestResult,
    adjust_pvalues,
    cohens_d,
    compare,
    confidence_interval,
    paired_t_test,
    summarize,
    welch_t_test,
)
from actlab.report.tables import ResultTable, WinTieLoss, summarize_runs, win_tie_loss

__all__ = [
    "Claim",
    "Curve",
    "ResultTable",
    "RunRecord",
    "StoreError",
    "Summary",
    "TestResult",
    "WinTieLoss",
    "activation_curves",
    "adjust_pvalues",
    "add_plot_arguments",
    "add_report_arguments",
    "ash_gate_curves",
    "ash_gate_params",
    "cohens_d",
    "compare",
    "confidence_interval",
    "epochs_to_reach",
    "history_curve",
    "layer_stat_curves",
    "load_runs",
    "paired_t_test",
    "run_plot",
    "run_report",
    "summarize",
    "summarize_runs",
    "welch_t_test",
    "win_tie_loss",
    "write_results_page",
]
