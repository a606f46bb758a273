"""``layer_backend``: the actlab layers' backend as a training setting, applied per run and per
cell, recorded with every run, and part of a cell's key only when it is not ``"eager"`` (so the
stored eager cells keep their keys). The suite runs with ``ACTLAB_BACKEND=eager`` (conftest)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from actlab.data import DatasetSplits
from actlab.functional import backends, native
from actlab.models import create_model
from actlab.sweep.cellenv import cell_environment
from actlab.sweep.grid import expand
from actlab.sweep.spec import load_spec, parse_spec
from actlab.train import TrainConfig, train_model
from actlab.train.config import LAYER_BACKENDS
from actlab.train.loop import _check_resume

ROOT = Path(__file__).resolve().parents[1]
BASE = {"name": "lb", "dataset": "digits", "model": "tiny_cnn", "acts": ["relu", "sau"],
        "seeds": [0], "epochs": 1}


def keys(data: dict) -> set[str]:
    return {c.key for c in expand(parse_spec(data, source="lb.toml"))}


def test_setting_names_the_backends() -> None:
    assert LAYER_BACKENDS == backends.BACKENDS
    assert TrainConfig().layer_backend is None
    assert TrainConfig(layer_backend="Compiled").layer_backend == "compiled"
    with pytest.raises(ValueError, match="TrainConfig.layer_backend must be none or one of"):
        TrainConfig(layer_backend="fast")


def test_eager_cells_keep_their_keys() -> None:
    eager = expand(parse_spec(BASE, source="lb.toml"))  # the process backend: eager (conftest)
    assert all("layer_backend" not in c.config and c.layer_backend == "eager" for c in eager)
    with backends.backend("auto"):  # a spec pinned to eager ignores the process backend
        assert keys({**BASE, "layer_backend": "eager"}) == {c.key for c in eager}


def test_other_backends_enter_the_key() -> None:
    eager = keys(BASE)
    with backends.backend("auto"):  # unpinned spec: the backend of the expanding process
        auto = expand(parse_spec(BASE, source="lb.toml"))
    assert all(c.config["layer_backend"] == "auto" == c.layer_backend for c in auto)
    assert all("layer_backend" not in c.config["train"] for c in auto)
    compiled = keys({**BASE, "layer_backend": "compiled"})
    assert len({c.key for c in auto} | eager | compiled) == 3 * len(eager)
    swept = keys({**BASE, "grid": {"layer_backend": ["eager", "compiled"]}})
    assert swept == eager | compiled


def test_offline_specs_pin_eager() -> None:
    """The stored studies ran eager: re-running their specs under "auto" finds the same keys."""
    paths = sorted((ROOT / "specs" / "offline").glob("*.toml"))
    assert paths
    with backends.backend("auto"):
        for path in paths:
            spec = load_spec(path, check_names=False)
            assert spec.train.layer_backend == "eager", path.name
            assert all("layer_backend" not in c.config for c in expand(spec)), path.name


def test_cell_environment_pins_and_restores_the_backend() -> None:
    with backends.backend("auto"):
        (cell, _) = expand(parse_spec({**BASE, "layer_backend": "compiled"}, source="lb.toml"))
    assert backends.get_backend() == "eager"
    with cell_environment(cell):
        assert backends.get_backend() == "compiled"
    assert backends.get_backend() == "eager"


@pytest.fixture(scope="module")
def tiny_digits() -> DatasetSplits:
    """Random 8x8 "digits" (no dataset load): enough for one epoch of tiny_cnn."""
    gen = torch.Generator().manual_seed(0)

    def part(n: int) -> TensorDataset:
        return TensorDataset(torch.randn(n, 1, 8, 8, generator=gen),
                             torch.randint(0, 10, (n,), generator=gen))

    return DatasetSplits(name="random", task="classification", train=part(64), val=part(32),
                         test=part(32), num_classes=10, in_channels=1, input_shape=(1, 8, 8))


@pytest.mark.parametrize(("setting", "used"), [(None, "eager"), ("auto", "auto")])
def test_train_applies_and_records_the_backend(tiny_digits: DatasetSplits, setting: str | None,
                                               used: str, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    seen: list[str] = []
    restart = backends.restart_auto
    monkeypatch.setattr(backends, "restart_auto", lambda: (seen.append(backends.get_backend()),
                                                            restart()))
    torch.manual_seed(0)
    model = create_model("tiny_cnn", num_classes=10, in_channels=1, act="sau", width=4)
    cfg = TrainConfig(epochs=1, batch_size=32, device="cpu", layer_backend=setting)
    ckpt = tmp_path / "c.pt"
    result = train_model(model, tiny_digits, cfg, checkpoint_path=ckpt, progress=False)
    assert seen == [used]  # the run's budgets restarted, under the run's backend
    assert result.config["layer_backend"] == used
    assert backends.get_backend() == "eager"  # restored
    saved = torch.load(ckpt, weights_only=False)["config"]
    assert saved["layer_backend"] == used


def test_resume_treats_old_checkpoints_as_eager() -> None:
    old = {k: v for k, v in TrainConfig(layer_backend="eager").to_dict().items()
           if k != "layer_backend"}
    _check_resume(old, TrainConfig(layer_backend="eager"), "old.pt")
    with pytest.raises(ValueError, match="layer_backend: 'eager' -> 'auto'"):
        _check_resume(old, TrainConfig(layer_backend="auto"), "old.pt")


def test_cli_set_and_header(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from actlab.cli import main

    path = tmp_path / "lb.toml"
    path.write_text('name = "lb"\ndataset = "digits"\nmodel = "tiny_cnn"\nacts = ["sau"]\n'
                    "seeds = [0]\nepochs = 1\n")
    assert load_spec(path).train.layer_backend is None  # the process backend
    db = str(tmp_path / "r.sqlite")
    assert main(["run", str(path), "--set", "layer_backend=compiled", "--check", "--db", db]) == 0
    assert "1 thread per cell, layer backend compiled" in capsys.readouterr().out


class _Stop(Exception):
    pass


def test_resumed_auto_run_switches_to_compiled_at_the_same_step(
        tiny_digits: DatasetSplits, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The "auto" budgets travel in the checkpoint: a run interrupted before its layers switched
    to the compiled kernels switches at the same step after resuming, so it ends bit-identical
    to the uninterrupted run (a stand-in compiler runs the fused formula uncompiled; its float32
    erf differs from the eager path's, so a switch at another step changes the numbers)."""
    compiled: list[str] = []

    def fake_compile(fn, fullgraph):  # noqa: ANN001, ANN202 - torch.compile's signature
        compiled.append(fn.__name__)
        return fn

    monkeypatch.setattr(backends.torch, "compile", fake_compile)
    monkeypatch.setattr(native, "_enabled", False)  # the budgeted torch.compile path
    monkeypatch.setattr(backends, "AUTO_MIN_NUMEL", 1)
    # tiny_cnn width 4 on 64 8x8 images, batch 16: 4 steps an epoch; the first SAU's input has
    # 16*4*8*8 elements: its budget runs out during epoch 2 (after 6 forward calls)
    monkeypatch.setattr(backends, "AUTO_COMPILE_AFTER", 6 * 16 * 4 * 8 * 8)
    cfg = TrainConfig(epochs=3, batch_size=16, device="cpu", layer_backend="auto", lr=0.05,
                      log_layer_stats=False)

    def run(path: Path, on_epoch=None) -> tuple[object, torch.nn.Module]:  # noqa: ANN001
        torch.manual_seed(0)
        model = create_model("tiny_cnn", num_classes=10, in_channels=1, act="sau", width=4)
        return train_model(model, tiny_digits, cfg, checkpoint_path=path, on_epoch=on_epoch,
                           progress=False), model

    # one thread, as the sweep pins it: at 2 threads the stand-in's float32 sums differ in the
    # last bit between otherwise identical runs (the eager path's did not, in this model)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    backends.reset_compiled()
    try:
        full, full_model = run(tmp_path / "full.pt")
        assert compiled, "the budget never ran out: the test would not test the switch"

        def stop(epoch: int, record: dict) -> None:
            if epoch == 1:
                raise _Stop

        backends.reset_compiled()
        with pytest.raises(_Stop):
            run(tmp_path / "part.pt", stop)
        backends.reset_compiled()  # a fresh process: no budgets, no kernels
        resumed, resumed_model = run(tmp_path / "part.pt")
    finally:
        backends.reset_compiled()
        torch.set_num_threads(threads)

    def strip(history: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "epoch_time"} for r in history]

    assert strip(resumed.history) == strip(full.history)
    for a, b in zip(full_model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(a, b)
