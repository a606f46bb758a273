"""actlab report / actlab plot argument handling and the Markdown results page."""

from __future__ import annotations

import argparse
import csv
import io
import re

import pytest

from actlab.report.cli import add_plot_arguments, add_report_arguments, run_plot, run_report
from actlab.report.results_page import (
    Claim,
    read_claim_blocks,
    split_layers,
    write_results_page,
)
from test_report_fixtures import connect, make_layer_store, make_norm_store


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """One store holding both fabricated studies."""
    path = tmp_path_factory.mktemp("cli") / "all.sqlite"
    make_layer_store(path)
    make_norm_store(path)
    return path


def _report(argv):
    p = argparse.ArgumentParser()
    add_report_arguments(p)
    return p.parse_args(argv)


def _plot(argv):
    p = argparse.ArgumentParser()
    add_plot_arguments(p)
    return p.parse_args(argv)


def test_report_text_per_study(db, capsys):
    assert run_report(_report(["--db", str(db)])) == 0
    out = capsys.readouterr().out
    assert out.count("== study ") == 3  # acts, bn_vs_agc, other
    assert "digits / tiny_cnn" in out and "relu+agc" in out


def test_report_win_tie_loss_md_to_file(db, tmp_path, capsys):
    out_file = tmp_path / "r.md"
    args = _report(["--db", str(db), "--study", "acts", "--format", "md", "--baseline",
                    "relu", "--alpha", "0.01", "--out", str(out_file), "--details"])
    assert run_report(args) == 0
    text = out_file.read_text()
    assert "## Study `acts`" in text
    # candidates default to every non-baseline layer: ash and sau, each vs relu
    assert "**ash vs baselines" in text and "**sau vs baselines" in text
    assert "alpha = 0.01" in text and "paired t-test" in text
    sau = re.search(r"\| relu \| (\d) \| (\d) \| (\d) \|", text.split("**sau vs")[1])
    assert sau.groups() == ("3", "0", "0")
    ash = re.search(r"\| relu \| (\d) \| (\d) \| (\d) \|", text.split("**ash vs")[1])
    assert ash.groups() == ("0", "3", "0")


def test_report_csv_has_study_column_and_wtl_file(db, tmp_path):
    out_file = tmp_path / "r.csv"
    args = _report(["--db", str(db), "--format", "csv", "--candidate", "sau",
                    "--out", str(out_file), "--study", "acts", "--study", "bn_vs_agc"])
    assert run_report(args) == 0
    rows = list(csv.DictReader(io.StringIO(out_file.read_text())))
    assert {r["study"] for r in rows} == {"acts", "bn_vs_agc"}
    assert len(rows) == 9 + 8
    wtl = list(csv.DictReader(io.StringIO((tmp_path / "r_wtl.csv").read_text())))
    assert {r["candidate"] for r in wtl} == {"sau"} and len(wtl) == 6
    assert {r["outcome"] for r in wtl} == {"win"}


def test_report_errors(db, tmp_path, capsys):
    assert run_report(_report(["--db", str(tmp_path / "none.sqlite")])) == 2
    assert "does not exist" in capsys.readouterr().err
    assert run_report(_report(["--db", str(db), "--baseline", "nope"])) == 2
    assert "no layer 'nope'" in capsys.readouterr().err
    assert run_report(_report(["--db", str(db), "--study", "absent"])) == 1
    assert run_report(_report(["--db", str(db), "--metric", "test_miou"])) == 2
    with pytest.raises(SystemExit):
        _report(["--alpha", "1.5"])
    with pytest.raises(SystemExit):
        _report(["--format", "html"])


def test_plot_kinds_write_files(db, tmp_path, capsys):
    written = {}
    for kind in ("curves", "val-loss", "bn-vs-agc", "agc-lambda", "ash"):
        out = tmp_path / kind
        argv = [kind, "--db", str(db), "--out", str(out), "--dpi", "40"]
        if kind in ("curves", "val-loss"):  # drawable for every study: keep it quick
            argv += ["--study", "other"]
        assert run_plot(_plot(argv)) == 0, kind
        written[kind] = sorted(p.name for p in out.iterdir())
    assert written["curves"] == ["curves_other.png"]
    assert written["val-loss"] == ["val_loss_other.png", "val_loss_other_epochs.md"]
    assert written["bn-vs-agc"] == ["bn_vs_agc_bn_vs_agc.png"]  # only the study with 2 norms
    assert written["agc-lambda"] == ["agc_lambda_bn_vs_agc.png"]
    assert written["ash"] == ["ash_acts.png"]
    for files in written.values():
        for name in files:
            path = next(tmp_path.rglob(name))
            data = path.read_bytes()
            if name.endswith(".png"):
                assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000, name
            else:
                assert b"| dataset | model | layer |" in data, name
    printed = capsys.readouterr().out
    assert "curves_other.png" in printed


def test_plot_activations_and_errors(db, tmp_path, capsys):
    assert run_plot(_plot(["activations", "--out", str(tmp_path), "--act", "relu,gelu",
                           "--format", "svg"])) == 0
    assert (tmp_path / "activations.svg").read_text().lstrip().startswith("<?xml")
    assert run_plot(_plot(["activations", "--out", str(tmp_path), "--act", "bogus"])) == 2
    assert "unknown activation 'bogus'" in capsys.readouterr().err
    assert run_plot(_plot(["agc-lambda", "--db", str(db), "--study", "acts",
                           "--out", str(tmp_path)])) == 1
    with pytest.raises(SystemExit):
        _plot(["pie"])


def test_plot_activations_with_paper_layers(tmp_path, monkeypatch, capsys):
    from actlab.nn.ash import ASH
    from actlab.nn.sau import SAU
    from actlab.registry import ACTIVATIONS, _act_entry

    for name, cls in (("sau", SAU), ("ash", ASH)):
        if name not in ACTIVATIONS:
            monkeypatch.setitem(ACTIVATIONS._factories, name, _act_entry(cls))
    argv = ["activations", "--out", str(tmp_path), "--dpi", "30", "--sau-n", "2",
            "--ash-z", "0.5", "--ash-alpha", "1", "--ash-alpha", "3"]
    assert run_plot(_plot(argv)) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["activations.png", "activations_ash_gate.png", "activations_sau.png"]
    for name in names:
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000, name
    assert "activations_sau.png" in capsys.readouterr().out


def test_split_layers(db):
    from actlab.report.load import load_runs

    assert split_layers(load_runs(db, "acts")) == (["ash", "sau"], ["relu"])
    assert split_layers(load_runs(db, "bn_vs_agc")) == (["relu+agc"], ["relu+bn"])


def test_results_page(tmp_path):
    db = make_layer_store(tmp_path / "small.sqlite", cells=1)
    make_norm_store(db, lrs=(0.1,))
    page = write_results_page(db, tmp_path / "docs" / "results.md", tmp_path / "docs" / "fig",
                              studies=["acts", "bn_vs_agc"], dpi=40)
    text = page.read_text()
    assert text.startswith("# Results")
    assert "<!-- claims: acts -->" in text and "<!-- claims: bn_vs_agc -->" in text
    assert "**sau vs baselines" in text and "**relu+agc vs baselines" in text
    assert "Epochs to reach val_loss" in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert "fig/activations.png" in links and "fig/bn_vs_agc_bn_vs_agc.png" in links
    for link in links:
        target = page.parent / link
        assert target.is_file() and target.stat().st_size > 1000, link
    with pytest.raises(ValueError, match="no finished runs"):
        write_results_page(db, tmp_path / "x.md", tmp_path, studies="absent")
    # every claims block is present and visibly empty until the claims are written
    assert text.count("<!-- /claims") == 3 and text.count("Claims not yet assessed") == 3
    assert text.index("<!-- claims -->") < text.index("## Study `acts`")
    assert read_claim_blocks(page) == {}


def test_results_page_claims_written_and_kept(tmp_path):
    db = make_layer_store(tmp_path / "small.sqlite", cells=1)
    out, figs = tmp_path / "RESULTS.md", tmp_path / "fig"
    kw = {"studies": "acts", "activations": False, "figures": False}
    claims = {
        None: [Claim("SAU beats ReLU (SAU paper, Table 8)", "holds", "3/0/0 win/tie/loss")],
        "acts": [Claim("ASH beats ReLU", "does not hold", "tie in 1/1 cells, p = 0.7"),
                 Claim("SAU on ImageNet", "not testable", "no ImageNet runs")],
    }
    text = write_results_page(db, out, figs, claims=claims, **kw).read_text()
    assert "- **holds** — SAU beats ReLU (SAU paper, Table 8): 3/0/0 win/tie/loss" in text
    acts = text.split("## Study `acts`")[1]
    assert "- **does not hold** — ASH beats ReLU: tie in 1/1 cells, p = 0.7" in acts
    assert "- **not testable** — SAU on ImageNet: no ImageNet runs" in acts
    assert "Claims not yet assessed" not in text
    # a hand edit inside a block survives regeneration without claims; outside it does not
    edited = text.replace("no ImageNet runs", "no ImageNet runs (hand note)") + "\nstray\n"
    out.write_text(edited)
    blocks = read_claim_blocks(out)
    assert set(blocks) == {None, "acts"} and "hand note" in blocks["acts"]
    again = write_results_page(db, out, figs, **kw).read_text()
    assert "(hand note)" in again and "stray" not in again
    assert "Claims not yet assessed" not in again
    fresh = write_results_page(db, out, figs, keep_claims=False, **kw).read_text()
    assert fresh.count("Claims not yet assessed") == 2
    with pytest.raises(ValueError, match="verdict must be one of"):
        Claim("x", "mostly holds")
    with pytest.raises(ValueError, match="studies not on the page: actz"):
        write_results_page(db, out, figs, claims={"actz": ["x"]}, **kw)


def test_fixture_store_uses_the_contract_schema(tmp_path):
    con = connect(tmp_path / "s.sqlite")
    cols = [row[1] for row in con.execute("PRAGMA table_info(runs)")]
    assert cols == ["cell_key", "study", "dataset", "model", "act", "norm", "seed", "config",
                    "status", "history", "metrics", "wall_time", "peak_mem_mb", "versions",
                    "error", "created_at", "updated_at"]
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_report_page_command_writes_the_page_and_keeps_hand_written_claims(db, tmp_path, capsys):
    page = tmp_path / "docs" / "RESULTS.md"
    assert run_report(_report(["--db", str(db), "--study", "acts", "--page", str(page),
                               "--no-figures"])) == 0
    text = page.read_text()
    assert "## Study `acts`" in text and "bn_vs_agc" not in text
    assert "![" not in text and not (tmp_path / "docs" / "fig").exists()
    # a claim written by hand into the study's block survives regeneration
    edited = text.replace("<!-- claims: acts -->\n",
                          "<!-- claims: acts -->\n- **holds** — hand-written claim\n", 1)
    page.write_text(edited)
    assert run_report(_report(["--db", str(db), "--study", "acts", "--page", str(page),
                               "--no-figures"])) == 0
    assert "hand-written claim" in page.read_text()
    # with figures: they go to <page folder>/fig and every link resolves
    assert run_report(_report(["--db", str(db), "--study", "acts", "--page", str(page)])) == 0
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text())
    assert links and all((page.parent / link).is_file() for link in links)
    assert all(link.startswith("fig/") for link in links)
    # errors: unknown study, --figures without --page
    assert run_report(_report(["--db", str(db), "--study", "nope", "--page", str(page)])) == 2
    assert "no finished runs" in capsys.readouterr().err
    assert run_report(_report(["--db", str(db), "--no-figures"])) == 2
    assert "need --page" in capsys.readouterr().err


def test_report_baseline_without_norm_suffix_and_correction_flag(db, capsys):
    args = _report(["--db", str(db), "--study", "bn_vs_agc", "--baseline", "relu"])
    assert args.correction == "holm"
    assert run_report(args) == 0
    out = capsys.readouterr().out
    assert "relu+agc vs baselines" in out and "\nrelu+bn " in out
    assert "Holm-corrected" in out
    assert run_report(_report(["--db", str(db), "--study", "bn_vs_agc", "--candidate",
                               "relu+agc", "--baseline", "relu", "--correction", "none"])) == 0
    out = capsys.readouterr().out
    assert "no correction for multiple comparisons" in out
    assert run_report(_report(["--db", str(db), "--study", "bn_vs_agc", "--baseline",
                               "gelu"])) == 2
    err = capsys.readouterr().err
    assert "no layer 'gelu'" in err and err.count("\n") == 1
    with pytest.raises(SystemExit):
        _report(["--correction", "bonferroni"])
    capsys.readouterr()


def test_report_ambiguous_baseline_is_a_one_line_error(tmp_path, capsys):
    from test_report_fixtures import add_run, fake_history

    path = make_norm_store(tmp_path / "three.sqlite")
    con = connect(path)
    for seed in range(3):
        add_run(con, study="bn_vs_agc", dataset="digits", model="tiny_cnn", act="relu",
                norm="gn", seed=seed, config={"train": {"batch_size": 2, "lr": 0.01}},
                history=fake_history(0.8 + 0.01 * seed))
    con.commit()
    con.close()
    assert run_report(_report(["--db", str(path), "--baseline", "relu"])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "baseline layer 'relu' is ambiguous: it matches relu+bn, relu+gn" in err
