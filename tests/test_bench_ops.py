"""Operator and training-step benchmarks: structure, measured memory, CLI (no timing asserts)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from actlab.bench.cli import main
from actlab.bench.measure import saved_tensor_bytes, time_interleaved
from actlab.bench.ops import OP_CASES, format_ops, run_ops
from actlab.bench.step import StepConfig, build_model, format_step, fuse_agc_act, run_step
from actlab.nn.agc import AGC, AGCAct

EAGER = [c for c in OP_CASES if c.backend == "eager"]


def test_time_interleaved_alternates_and_counts() -> None:
    order: list[str] = []
    calls = {
        "a": (None, lambda: order.append("a")),
        "b": (lambda: 5, lambda v: order.append(f"b{v}")),
    }
    t = time_interleaved(calls, repeats=3, warmup=1)
    assert order == ["a", "b5"] * 4
    assert t["a"].runs == 3 and t["b"].runs == 3
    with pytest.raises(ValueError):
        time_interleaved(calls, repeats=0)


def test_run_ops_measures_saved_bytes_and_ratios() -> None:
    results = run_ops(EAGER, [(2, 4, 6, 6)], [torch.float32], repeats=1, progress=False)
    by = {r.case: r for r in results}
    assert set(by) == {c.name for c in EAGER}
    for name in ("gelu", "silu", "bn", "bn_relu"):
        assert by[name].ratio == pytest.approx(1.0)
    saved = {k: r.saved_bytes / r.input_bytes for k, r in by.items()}
    # the layers' own backward keeps one input-sized tensor; the compositions keep several
    assert 1.0 <= saved["sau"] < 1.01  # x plus the 0-d clamped n
    assert saved["sau_naive"] >= 3
    assert 1.0 <= saved["ash"] < 1.1 and saved["ash_naive"] >= 3
    assert 1.0 <= saved["agc"] < 1.1
    assert 1.0 <= saved["agc_act"] < 1.1  # the output plus (N, C) means
    assert saved["agc_relu"] >= 2.0  # AGC's input plus ReLU's output
    d = by["sau"].as_dict()
    assert d["shape"] == [2, 4, 6, 6] and d["backend"] == "eager"
    assert {"forward", "backward", "forward_backward", "saved_inputs"} <= set(d)
    text = format_ops(results)
    assert "sau_naive" in text and "× gelu" in text
    assert format_ops(results, markdown=True).count("| sau |") == 1


def test_run_ops_half_precision_and_missing_reference() -> None:
    cases = [c for c in EAGER if c.name in ("gelu", "sau", "bn", "agc")]
    results = run_ops(cases, [(2, 4, 4, 4)], [torch.bfloat16], repeats=1, progress=False)
    assert {r.dtype for r in results} == {"bfloat16"}
    with pytest.raises(ValueError, match="reference"):
        run_ops([c for c in EAGER if c.name == "sau"], [(2, 4, 4, 4)], repeats=1)


def test_cli_ops_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["ops", "--shape", "2x4x4x4", "--dtype", "float32", "--repeats", "1",
               "--case", "sau", "--no-compiled", "--json"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert {r["case"] for r in data["results"]} == {"sau", "gelu"}
    assert "torch" in data["machine"]
    assert main(["ops", "--case", "nope", "--no-compiled"]) == 2


def test_fuse_agc_act_keeps_the_function_and_saves_less() -> None:
    torch.manual_seed(0)
    model = build_model(StepConfig("relu", "agc"))
    fused_model = fuse_agc_act(build_model(StepConfig("relu", "agc")))
    fused_model.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(fused_model(x), model(x), rtol=1e-5, atol=1e-6)
    n_fused = sum(isinstance(m, AGCAct) for m in fused_model.modules())
    assert n_fused == 4  # stem + first conv of each of the three blocks
    assert sum(type(m) is AGC for m in fused_model.modules()) == 5  # conv2s and shortcuts
    assert isinstance(fused_model.stem.act, nn.Identity)
    params = tuple(fused_model.parameters())
    saved_fused = saved_tensor_bytes(lambda: fused_model(x), exclude=params)
    saved_plain = saved_tensor_bytes(lambda: model(x), exclude=tuple(model.parameters()))
    assert saved_fused < saved_plain


def test_build_model_rejects_unknown_configs() -> None:
    with pytest.raises(ValueError, match="unknown configuration"):
        build_model(StepConfig("tanh", "bn"))
    with pytest.raises(ValueError, match="agc_act"):
        build_model(StepConfig("sau", "agc_act"))


def test_run_step_reports_ratios_and_memory(capsys: pytest.CaptureFixture[str]) -> None:
    configs = [StepConfig("relu", "bn"), StepConfig("sau", "bn"), StepConfig("relu", "agc_act")]
    results = run_step(configs, batch=2, image=8, width=4, repeats=1, progress=False)
    assert [r.config.name for r in results] == ["relu/bn", "sau/bn", "relu/agc_act"]
    assert results[0].ratio == pytest.approx(1.0) and results[0].saved_ratio == pytest.approx(1.0)
    assert all(r.saved_bytes > 0 and r.state_bytes > 0 and r.peak_bytes is None for r in results)
    assert "relu/agc_act" in format_step(results) and "|---" in format_step(results, True)
    assert main(["step", "--batch", "2", "--image", "8", "--width", "4", "--repeats", "1",
                 "--config", "relu/bn", "--config", "relu/agc", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["config"] for r in data["results"]] == ["relu/bn", "relu/agc"]
    assert main(["step", "--config", "relu"]) == 2
