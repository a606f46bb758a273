"""actlab.functional.native: the hand-written CPU kernels of SAU and ASH.

Checked against float64 autograd of the naive reference compositions (``sau_reference``,
``ash_reference``), bitwise across thread counts, at the float32 maximum, and for the build
(cache, concurrent builders, a broken compiler) and the backend rules that choose them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from actlab.functional import backends, native
from actlab.functional.ash import ash, ash_reference
from actlab.functional.sau import sau, sau_reference

D64 = torch.float64

# Skip only where no C compiler exists at all; with a compiler, a failed build fails the tests
# (a skip would hide that regression).
pytestmark = pytest.mark.skipif(native._compiler() is None, reason="no C compiler on this machine")


def test_the_kernels_build_here() -> None:
    assert native.available(), native.build_error()


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the calls each native entry point actually served (returned a result)."""
    served: dict[str, int] = {}
    for name in ("sau_forward", "sau_backward", "ash_forward", "ash_backward"):
        original = getattr(native, name)

        def wrapper(*args, _original=original, _name=name, **kwargs):  # noqa: ANN002, ANN003
            result = _original(*args, **kwargs)
            if result is not None:
                served[_name] = served.get(_name, 0) + 1
            return result

        monkeypatch.setattr(native, name, wrapper)
    return served


def _grad_like(y: torch.Tensor) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.randn(y.shape, generator=g).to(y.dtype)


def _tolerance(dtype: torch.dtype) -> float:
    return 3e-6 if dtype == torch.float32 else 1.6e-2  # bfloat16: 8 bits of mantissa


def _assert_rel(got: torch.Tensor, want: torch.Tensor, rel: float) -> None:
    scale = want.abs().max().item() + 1e-30
    err = (got.double() - want).abs().max().item()
    assert err <= rel * scale, f"max error {err:.3g} vs scale {scale:.3g} (allowed {rel:.1g})"


# ---------------------------------------------------------------------------------------------
# SAU
# ---------------------------------------------------------------------------------------------
SAU_LAYOUTS = {
    "scalar": ((6, 8, 37, 41), ()),  # 72,816 elements: 5 rows of 16,384, the last partial
    "per_channel": ((4, 8, 9, 7), (8, 1, 1)),
    "per_feature_2d": ((64, 33), (33,)),  # (N, C) with one value per feature
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", list(SAU_LAYOUTS))
@pytest.mark.parametrize("formula", ["exact", "paper"])
def test_sau_matches_float64_reference(dtype, layout: str, formula: str, spy) -> None:
    shape, pshape = SAU_LAYOUTS[layout]
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=g) * 0.4).to(dtype)
    alpha = (0.15 + 0.1 * torch.rand(pshape, generator=g)).requires_grad_()
    n = torch.full(pshape, 9.0)  # smooth enough that erf and the Gaussian both matter
    xs = x.clone().requires_grad_()
    with backends.backend("compiled"):
        y = sau(xs, alpha, n, formula)
        gy = _grad_like(y)
        gx, ga = torch.autograd.grad(y, (xs, alpha), gy)
    assert spy == {"sau_forward": 1, "sau_backward": 1}
    assert y.dtype == gx.dtype == dtype and ga.dtype == torch.float32 and ga.shape == pshape
    x64 = x.double().requires_grad_()
    a64 = alpha.detach().double().requires_grad_()
    ref = sau_reference(x64, a64, n.double(), formula)
    rx, ra = torch.autograd.grad(ref, (x64, a64), gy.double())
    rel = _tolerance(dtype)
    _assert_rel(y, ref.detach(), rel)
    _assert_rel(gx, rx, rel)
    _assert_rel(ga, ra, 3e-6)  # sums in float64 of float32 terms, whatever the input dtype


def test_sau_default_configuration_at_paper_n(spy) -> None:
    """n = 20000 (the paper's default) on inputs around the kink, against float64."""
    x = torch.linspace(-3e-4, 3e-4, 70007).reshape(7, 10001)
    alpha = torch.tensor(0.15, requires_grad=True)
    xs = x.clone().requires_grad_()
    with backends.backend("compiled"):
        y = sau(xs, alpha, torch.tensor(20000.0))
        gx, ga = torch.autograd.grad(y, (xs, alpha), torch.ones_like(y))
    assert spy == {"sau_forward": 1, "sau_backward": 1}
    x64 = x.double().requires_grad_()
    a64 = alpha.detach().double().requires_grad_()
    ref = sau_reference(x64, a64, 20000.0)
    rx, ra = torch.autograd.grad(ref, (x64, a64), torch.ones_like(ref))
    torch.testing.assert_close(y.double(), ref.detach(), rtol=1e-6, atol=1e-10)
    torch.testing.assert_close(gx.double(), rx, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ga.double(), ra, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# ASH
# ---------------------------------------------------------------------------------------------
ASH_LAYOUTS = {
    "scalar": ((5, 6, 11, 13), ()),
    "per_channel": ((4, 6, 8, 8), (1, 6, 1, 1)),
    "flat_large": ((3, 9000), ()),  # three summation blocks of 4,096 per sample
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", list(ASH_LAYOUTS))
@pytest.mark.parametrize("leak", [0.0, 0.1])
def test_ash_matches_float64_reference(dtype, layout: str, leak: float, spy) -> None:
    shape, pshape = ASH_LAYOUTS[layout]
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(shape, generator=g) * 2 + 0.5).to(dtype)
    z = (0.3 + torch.rand(pshape, generator=g)).requires_grad_()
    a = (0.7 + torch.rand(pshape, generator=g)).requires_grad_()
    xs = x.clone().requires_grad_()
    with backends.backend("compiled"):
        y = ash(xs, z, a, leak=leak)
        gy = _grad_like(y)
        gx, gz, ga = torch.autograd.grad(y, (xs, z, a), gy)
    assert spy == {"ash_forward": 1, "ash_backward": 1}
    x64 = x.double().requires_grad_()
    z64, a64 = (t.detach().double().requires_grad_() for t in (z, a))
    ref = ash_reference(x64, z64, a64, leak=leak)
    rx, rz, ra = torch.autograd.grad(ref, (x64, z64, a64), gy.double())
    rel = _tolerance(dtype)
    _assert_rel(y, ref.detach(), rel)
    _assert_rel(gx, rx, rel)
    _assert_rel(gz, rz, 1e-5)
    _assert_rel(ga, ra, 1e-5)


def test_ash_is_finite_up_to_the_float32_max(spy) -> None:
    """Statistics of inputs near ±3.4e38 (float32 block sums overflow and are redone in
    float64), the gate and the backward stay finite and match the float64 reference."""
    big = torch.finfo(torch.float32).max
    g = torch.Generator().manual_seed(14)
    x = ((torch.rand(2, 3, 16, 16, generator=g, dtype=D64) * 2 - 1) * big).float()
    x[0, 0, 0, :2] = torch.tensor([big, -big])
    xs = x.clone().requires_grad_()
    with backends.backend("compiled"):
        y = ash(xs, 0.5, 1.0)
        (gx,) = torch.autograd.grad(y, xs, torch.full_like(y, 1e-3))
    assert spy == {"ash_forward": 1, "ash_backward": 1}
    assert torch.isfinite(y).all() and torch.isfinite(gx).all()
    assert y[0, 0, 0, 0] == x[0, 0, 0, 0]  # far above the threshold: passed unchanged
    ref = ash_reference(x.double(), 0.5, 1.0)
    torch.testing.assert_close(y.double(), ref, rtol=1e-2, atol=1e-6 * big)


def test_sau_is_finite_up_to_the_float32_max() -> None:
    big = torch.finfo(torch.float32).max
    x = torch.tensor([-big, -1e30, -1.0, -1e-6, 0.0, 1e-6, 1.0, 1e30, big]).repeat(2, 1)
    xs = x.clone().requires_grad_()
    alpha = torch.tensor(0.15, requires_grad=True)
    with backends.backend("compiled"):
        y = sau(xs, alpha, torch.tensor(20000.0))
        gx, ga = torch.autograd.grad(y, (xs, alpha), torch.ones_like(y))
    assert torch.isfinite(y).all() and torch.isfinite(gx).all()
    ref = sau_reference(x.double(), 0.15, 20000.0)
    torch.testing.assert_close(y.double(), ref, rtol=1e-6, atol=1e-9)
    assert gx[0, 0] == pytest.approx(0.15) and gx[0, -1] == 1.0


# ---------------------------------------------------------------------------------------------
# determinism, coverage and the rules that choose the kernels
# ---------------------------------------------------------------------------------------------
def test_results_do_not_depend_on_the_thread_count() -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(9, 8, 30, 30, generator=g)
    gy = torch.randn(9, 8, 30, 30, generator=g)
    one = torch.tensor([0.3]), torch.tensor([1.2])
    results = []
    threads = torch.get_num_threads()
    try:
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            sau_y = native.sau_forward(x, torch.tensor(0.15), torch.tensor(50.0), False, False)
            sau_g = native.sau_backward(gy, x, torch.tensor(0.15), torch.tensor(50.0), False,
                                        False, True, True, False)
            y, mu, sigma = native.ash_forward(x, *one, (1, 2, 3), 1e-5, 0.0)
            ash_g = native.ash_backward(gy, x, mu, sigma, *one, (1, 2, 3), 0.0, True, True, True)
            results.append([sau_y, *sau_g[:2], y, mu, sigma, *ash_g])
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert torch.equal(a, b)


def test_calls_the_kernels_do_not_cover_return_none() -> None:
    x = torch.randn(2, 3, 4, 4)
    a, n = torch.tensor(0.15), torch.tensor(20.0)
    assert native.sau_forward(x.double(), a.double(), n.double(), False, False) is None
    assert native.sau_forward(x, a, n, False, True) is None  # zero-centred
    assert native.sau_forward(x.half(), a, n, False, False) is None
    cl = x.to(memory_format=torch.channels_last)
    assert native.sau_forward(cl, torch.full((3, 1, 1), 0.1), n, False, False) is None
    assert native.sau_forward(x.transpose(2, 3), a, n, False, False) is None  # not dense
    assert native.sau_forward(x, torch.full((4, 4), 0.1), n, False, False) is None  # 2 dims
    per_last = native.sau_forward(x, torch.full((4,), 0.1), n, False, False)  # one per dim-3 slot
    torch.testing.assert_close(per_last, sau_reference(x, torch.full((4,), 0.1), n), rtol=2e-6,
                               atol=1e-7)
    assert native.sau_backward(x, x, a, n, False, False, True, True, True) is None  # needs n
    z, al = torch.tensor(0.0), torch.tensor(1.0)
    assert native.ash_forward(x, z, al, (2, 3), 1e-5, 0.0) is None  # per-channel statistics
    assert native.ash_forward(x, torch.zeros(1, 1, 1, 4), al, (1, 2, 3), 1e-5, 0.0) is None
    assert native.ash_forward(x, z, al, (1, 2, 3), 1e-5, 0.0) is not None


@pytest.mark.parametrize("fmt", [torch.channels_last, torch.channels_last_3d])
def test_channels_last_inputs_with_scalar_parameters(fmt, spy) -> None:
    """Channels-last storage is read as one dense block (the order inside a sample does not
    matter for scalar parameters); outputs and gradients keep the input's memory format."""
    shape = (3, 5, 6, 7) if fmt is torch.channels_last else (2, 5, 3, 4, 6)
    g = torch.Generator().manual_seed(8)
    x = torch.randn(shape, generator=g).to(memory_format=fmt).requires_grad_()
    gy = torch.randn(shape, generator=g)  # contiguous: converted to x's layout
    z, al = torch.tensor(0.4, requires_grad=True), torch.tensor(1.3, requires_grad=True)
    a = torch.tensor(0.15, requires_grad=True)
    with backends.backend("compiled"):
        ya = ash(x, z, al)
        ga = torch.autograd.grad(ya, (x, z, al), gy)
        ys = sau(x, a, torch.tensor(4.0))
        gs = torch.autograd.grad(ys, (x, a), gy)
    assert spy == {"ash_forward": 1, "ash_backward": 1, "sau_forward": 1, "sau_backward": 1}
    assert ya.is_contiguous(memory_format=fmt) and ga[0].is_contiguous(memory_format=fmt)
    assert ys.is_contiguous(memory_format=fmt) and gs[0].is_contiguous(memory_format=fmt)
    x64 = x.detach().double().contiguous().requires_grad_()
    z64, al64, a64 = (t.detach().double().requires_grad_() for t in (z, al, a))
    ra = ash_reference(x64, z64, al64)
    rga = torch.autograd.grad(ra, (x64, z64, al64), gy.double())
    rs = sau_reference(x64, a64, 4.0)
    rgs = torch.autograd.grad(rs, (x64, a64), gy.double())
    for got, want in [(ya, ra), *zip(ga, rga, strict=True), (ys, rs), *zip(gs, rgs, strict=True)]:
        _assert_rel(got.detach(), want.detach(), 1e-5)


def test_auto_uses_the_kernels_from_the_first_large_call(monkeypatch, spy) -> None:
    """No budget for the native kernels under "auto"; small inputs stay eager; torch.compile is
    never called for SAU/ASH calls the kernels cover."""

    def no_compile(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("torch.compile was called")

    monkeypatch.setattr(backends.torch, "compile", no_compile)
    small = torch.randn(2, 4, 8, 8, requires_grad=True)
    large = torch.randn(4, 16, 32, 32, requires_grad=True)
    assert small.numel() < backends.AUTO_MIN_NUMEL <= large.numel()
    with backends.backend("auto"):
        ash(small).sum().backward()
        sau(small, 0.15).sum().backward()
        assert spy == {}
        ash(large).sum().backward()
        sau(large, torch.tensor(0.15)).sum().backward()
    assert spy == {"ash_forward": 1, "ash_backward": 1, "sau_forward": 1, "sau_backward": 1}
    with backends.backend("eager"):
        ash(large).sum().backward()
    assert spy["ash_forward"] == 1


def test_disabled_context_turns_the_kernels_off(spy) -> None:
    x = torch.randn(2, 3, 4, 4)
    with native.disabled():
        assert not native.available()
        with backends.backend("eager"):
            ash(x)
    assert native.available()
    assert spy == {}


# ---------------------------------------------------------------------------------------------
# the build
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def fresh_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """An empty kernel cache and a module that has not tried to build yet."""
    monkeypatch.setenv("ACTLAB_KERNEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "_error", None)
    return tmp_path / "cache"


def test_broken_compiler_warns_once_and_layers_fall_back(fresh_build, monkeypatch) -> None:
    monkeypatch.setattr(native, "_compiler", lambda: "false")  # a "compiler" that always fails
    x = torch.randn(2, 3, 4, 4)
    with backends.backend("eager"):
        want = ash(x)
    with pytest.warns(RuntimeWarning, match="native CPU kernels could not be built"):
        assert not native.available()
    assert "false failed" in native.build_error()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        assert native.ash_forward(x, torch.tensor(0.0), torch.tensor(1.0), (1, 2, 3), 1e-5,
                                  0.0) is None
        with backends.backend("eager"):
            torch.testing.assert_close(ash(x), want, rtol=0, atol=0)
    assert not list(fresh_build.glob("*.so"))  # nothing half-built left in the cache


def test_concurrent_first_builds_share_one_cached_library(fresh_build) -> None:
    """Two processes building into the same empty cache at once both load a library, and the
    cache ends with one complete file and no temporaries."""
    code = ("from actlab.functional import native; assert native.available(), "
            "native.build_error(); print(native.library_path())")
    env = {**os.environ, "ACTLAB_KERNEL_CACHE": str(fresh_build)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    paths = {out.strip() for out, _ in outs}
    assert len(paths) == 1
    assert [p.name for p in fresh_build.iterdir()] == [Path(paths.pop()).name]


def test_run_records_name_the_native_build() -> None:
    """A non-eager cell's versions say which kernel build ran (its last bits depend on the CPU
    it was built for); eager cells keep the old record."""
    from actlab.sweep.versions import collect_versions

    assert "native_kernels" not in collect_versions("eager")
    assert collect_versions("auto")["native_kernels"] == native.library_path().name
    assert native.library_path().name.startswith("actlab_cpu_")
    with native.disabled():
        assert collect_versions("compiled")["native_kernels"].startswith("off")


def test_run_records_a_failed_build(fresh_build, monkeypatch) -> None:
    from actlab.sweep.versions import collect_versions

    monkeypatch.setattr(native, "_compiler", lambda: None)
    with pytest.warns(RuntimeWarning, match="could not be built"):
        described = collect_versions("auto")["native_kernels"]
    assert described.startswith("unavailable: RuntimeError: no C compiler found")


def test_unwritable_cache_falls_back_to_the_temporary_directory(monkeypatch, tmp_path) -> None:
    """A home cache that cannot be written (read-only home; simulated, since root may write
    anywhere) sends the build to a per-user folder in the temporary directory."""
    monkeypatch.delenv("ACTLAB_KERNEL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    assert native._cache_dir() == tmp_path / "home-cache" / "actlab" / "kernels"
    monkeypatch.setattr(native.os, "access", lambda path, mode: False)
    monkeypatch.setattr(native.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    assert native._cache_dir().parent == tmp_path / "tmp"
    assert native._cache_dir().name.startswith("actlab-kernels-")
