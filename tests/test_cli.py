"""The ``actlab`` command line: run (errors, dry run, overrides), list, delegated commands."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from actlab.cli import main
from actlab.sweep.store import ResultStore

SRC = str(Path(__file__).resolve().parents[1] / "src")

GOOD = """
    name = "c"
    dataset = "digits"
    model = "tiny_cnn"
    acts = ["relu", "elu"]
    seeds = [0, 1]
    epochs = 3
"""


def spec_file(tmp_path: Path, text: str = GOOD, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def run_args(tmp_path: Path, spec: Path, *more: str) -> list[str]:
    return ["run", str(spec), "--db", str(tmp_path / "r.sqlite"), "--out",
            str(tmp_path / "out"), "--no-progress", *more]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (GOOD + 'optimiser = "sgd"\n', "optimiser: unknown key; did you mean 'optimizer'?"),
        (GOOD + "batch_size = 0\n", "batch_size: got 0; expected an integer >= 1"),
        (GOOD.replace('"elu"', '"eluu"'), "acts[1]: unknown activation 'eluu'; did you mean"),
        ("acts = [", "not valid TOML"),
    ],
)
def test_bad_spec_exits_2_with_one_line(tmp_path, capsys, text, fragment):
    spec = spec_file(tmp_path, text)
    assert main(run_args(tmp_path, spec)) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"actlab run: error: {spec}: ")
    assert fragment in lines[0]
    assert not (tmp_path / "r.sqlite").exists()


@pytest.mark.slow
def test_bad_spec_in_a_real_process_has_no_traceback(tmp_path):
    spec = spec_file(tmp_path, GOOD + "lr = -1\n", name="bad.toml")
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.run([sys.executable, "-m", "actlab.cli", *run_args(tmp_path, spec)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"actlab run: error: {spec}: lr: got -1; expected a number > 0")
    assert "Traceback" not in proc.stdout + proc.stderr


def test_missing_spec_file_and_bad_arguments(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    assert "no such spec file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["run", "--workers", "0"])
    assert info.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err
    spec = spec_file(tmp_path)
    assert main(run_args(tmp_path, spec, "--address", "x:1")) == 2
    assert "--address is only used with --engine ray" in capsys.readouterr().err


def test_dry_run_writes_rows_and_prints_the_table(tmp_path, capsys):
    spec = spec_file(tmp_path)
    assert main(run_args(tmp_path, spec, "--dry-run")) == 0
    out = capsys.readouterr().out
    assert "study 'c-dry-run': tiny_cnn on digits, 4 cells (2 acts x 1 norms x 2 seeds)" in out
    assert "test_acc (mean ± std)" in out
    table = out[out.index("\nlayer ") + 1:].splitlines()
    assert table[2].split()[:2] == ["relu", "2/2"] and table[3].split()[:2] == ["elu", "2/2"]
    assert "±" in table[2]
    with ResultStore(tmp_path / "r.sqlite") as store:
        rows = store.list()
    assert len(rows) == 4 and {r.study for r in rows} == {"c-dry-run"}
    assert all(r.status == "done" and len(r.history) == 3 for r in rows)
    # the same command again runs nothing
    assert main(run_args(tmp_path, spec, "--dry-run")) == 0
    assert "0 cells run now, 4 already done" in capsys.readouterr().out


def test_overrides_quick_seeds_epochs_acts(tmp_path, capsys):
    spec = spec_file(tmp_path)
    assert main(run_args(tmp_path, spec, "--dry-run", "--quick")) == 0
    assert main(run_args(tmp_path, spec, "--dry-run", "--seeds", "1", "--epochs", "2",
                         "--acts", "elu")) == 0
    with ResultStore(tmp_path / "r.sqlite") as store:
        quick = store.list(study="c-quick-dry-run")
        chosen = store.list(study="c-dry-run")
    assert sorted((r.act, r.seed) for r in quick) == [("elu", 0), ("relu", 0)]
    assert all(r.config["train"]["epochs"] == 2 and len(r.history) == 2 for r in quick)
    assert [(r.act, r.seed, r.config["train"]["epochs"]) for r in chosen] == [("elu", 1, 2)]
    capsys.readouterr()
    assert main(run_args(tmp_path, spec, "--dry-run", "--acts", "gelu")) == 2
    assert "--acts: ['gelu'] not in the spec's acts" in capsys.readouterr().err


def test_check_prints_cells_without_running(tmp_path, capsys):
    spec = spec_file(tmp_path)
    assert main(run_args(tmp_path, spec, "--check")) == 0
    out = capsys.readouterr().out
    assert "4 cells" in out and "relu+bn s0" in out and "elu+bn s1" in out
    assert not (tmp_path / "r.sqlite").exists()


def test_failed_cells_exit_1(tmp_path, capsys, monkeypatch):
    spec = spec_file(tmp_path)
    monkeypatch.setenv("ACTLAB_SWEEP_FAULT", "@2")  # the empty prefix matches every cell
    assert main(run_args(tmp_path, spec, "--dry-run")) == 1
    captured = capsys.readouterr()
    assert "0 cells run now, 0 already done, 4 failed" in captured.out
    assert "FaultInjected: fault injected after epoch 2" in captured.err
    assert "re-run the same command" in captured.err
    monkeypatch.delenv("ACTLAB_SWEEP_FAULT")
    assert main(run_args(tmp_path, spec, "--dry-run")) == 0
    assert "4 cells run now, 0 already done, 0 failed" in capsys.readouterr().out


def test_list_prints_registered_names(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("activations:", "norms:", "models:", "datasets:", "specs:", "relu", "gelu",
                 "swish", "bn", "gn", "default"):
        assert word in out
    assert main(["list", "norms"]) == 0
    names = capsys.readouterr().out.split()
    assert "bn" in names and "relu" not in names
    assert main(["list", "layers"]) == 0
    out = capsys.readouterr().out
    assert "relu" in out and "bn" in out
    assert main(["list", "tasks"]) == 0
    assert capsys.readouterr().out.split() == ["classification", "detection", "segmentation",
                                               "seq2seq"]
    assert main(["list", "models"]) == 0
    models = capsys.readouterr().out.split()
    assert {"ssd300", "ssd_lite", "classnet", "transformer_base", "deeplabv3plus"} <= set(models)
    assert main(["list", "datasets"]) == 0
    datasets = capsys.readouterr().out.split()
    assert {"synthetic_detection", "voc", "cityscapes", "scan", "wmt", "voc_seg",
            "ade20k"} <= set(datasets)


def test_help_and_delegated_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for command in ("run", "list", "report", "plot", "bench"):
        assert command in out
    with pytest.raises(SystemExit) as info:
        main(["bench", "--help"])
    assert info.value.code == 0
    assert "ops" in capsys.readouterr().out
    if _has_report_cli():
        for command in ("report", "plot"):
            with pytest.raises(SystemExit) as info:
                main([command, "--help"])
            assert info.value.code == 0
            assert f"usage: actlab {command}" in capsys.readouterr().out
    else:
        assert main(["report"]) == 2
        assert "actlab report: not available" in capsys.readouterr().err


def _has_report_cli() -> bool:
    try:
        import actlab.report.cli as cli
    except ModuleNotFoundError:
        return False
    return hasattr(cli, "add_report_arguments") or hasattr(cli, "add_arguments")


def test_data_dir_option_reaches_the_data_loader(tmp_path, capsys):
    spec = spec_file(tmp_path, GOOD.replace('"digits"', '"mnist"').replace(
        'model = "tiny_cnn"', 'model = "mlp"'))
    empty = tmp_path / "no-data-here"
    empty.mkdir()
    # checked before any cell starts: one line naming the missing file and how to point to it
    assert main(run_args(tmp_path, spec, "--seeds", "0", "--acts", "relu",
                         "--data-dir", str(empty))) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(empty / "train-images-idx3-ubyte") in err
    assert "--data-dir DIR, ACTLAB_DATA=DIR" in err
    assert not (tmp_path / "r.sqlite").exists()
