"""Plug-ins: a spec's ``imports`` (modules or .py files, paths relative to the spec) and the
``actlab.plugins`` entry points register layers, models and datasets in the driver, in every
spawned worker and in every Ray task; a missing or broken plug-in is one line naming it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from actlab.cli import main
from actlab.registry import ACTIVATIONS, DATASETS, MODELS, NORMS, PluginError, load_plugins
from actlab.sweep.grid import expand
from actlab.sweep.spec import SpecError, load_spec
from actlab.sweep.store import ResultStore

SRC = Path(__file__).resolve().parents[1] / "src"

#: a plug-in file as a user would write it: one of each kind, built only on public API
PLUGIN = '''
import os

import torch
from torch import nn
from torch.utils.data import TensorDataset

from actlab.data import DatasetSplits
from actlab.registry import DATASETS, MODELS, act_factory, norm_factory, register_act, register_norm


@register_act("plug_act")
class PlugAct(nn.Module):
    """x * sigmoid(beta x)."""

    def __init__(self, beta: float = 2.0):
        super().__init__()
        self.beta = beta

    def forward(self, x):
        return x * torch.sigmoid(self.beta * x)


@register_norm("plug_norm")
def plug_norm(num_channels, dim=2):
    return nn.LayerNorm(num_channels) if dim == 0 else nn.GroupNorm(1, num_channels)


@MODELS.register("plug_mlp")
def plug_mlp(act="relu", norm="none", num_classes=3, in_channels=2, hidden=16):
    a, n = act_factory(act), norm_factory(norm)
    return nn.Sequential(nn.Linear(in_channels, hidden), n(hidden, dim=0), a(),
                         nn.Linear(hidden, num_classes))


@DATASETS.register("blobs")
def blobs(data_dir=None, val_fraction=0.1, seed=0, *, n=120):
    """Three Gaussian blobs in the plane."""
    probe = os.environ.get("ACTLAB_TEST_PROBE")  # the test reads the thread count of each load
    if probe:
        open(os.path.join(probe, f"{os.getpid()}-{torch.get_num_threads()}"), "w").close()
    g = torch.Generator().manual_seed(1234)
    centres = torch.tensor([[0.0, 3.0], [3.0, -2.0], [-3.0, -2.0]])
    y = torch.arange(n) % 3
    x = centres[y] + torch.randn(n, 2, generator=g)
    cut_test, cut_val = n * 3 // 4, int(n * 3 // 4 * (1 - val_fraction))
    part = lambda a, b: TensorDataset(x[a:b], y[a:b])  # noqa: E731
    return DatasetSplits("blobs", "classification", part(0, cut_val), part(cut_val, cut_test),
                         part(cut_test, n), num_classes=3, in_channels=2, input_shape=(2,))
'''

SPEC = '''
name = "plug"
imports = ["./plugins/my_layers.py"]
dataset = "blobs"
model = "plug_mlp"
acts = ["plug_act", "relu"]
norms = ["plug_norm"]
seeds = [0]
epochs = 2
batch_size = 16
device = "cpu"
'''


@pytest.fixture(autouse=True)
def _clean_registries():
    """Each test loads its own copy of the plug-in: forget the previous test's registrations."""
    from actlab import registry

    saved = {k: (dict(r._factories), dict(r._aliases)) for k, r in registry.REGISTRIES.items()}
    loaded = set(registry._LOADED)
    yield
    for kind, (factories, aliases) in saved.items():
        registry.REGISTRIES[kind]._factories = factories
        registry.REGISTRIES[kind]._aliases = aliases
    registry._LOADED.intersection_update(loaded)


@pytest.fixture()
def plugin_spec(tmp_path: Path) -> Path:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "my_layers.py").write_text(textwrap.dedent(PLUGIN))
    path = tmp_path / "plug.toml"
    path.write_text(textwrap.dedent(SPEC))
    return path


def _run(tmp_path: Path, spec: Path, *more: str) -> int:
    return main(["run", str(spec), "--db", str(tmp_path / "r.sqlite"), "--out",
                 str(tmp_path / "out"), "--no-progress", *more])


def test_spec_imports_register_every_kind_and_names_validate(plugin_spec):
    spec = load_spec(plugin_spec)
    assert spec.imports == (str((plugin_spec.parent / "plugins" / "my_layers.py").resolve()),)
    assert "plug_act" in ACTIVATIONS and "plug_norm" in NORMS
    assert "plug_mlp" in MODELS and "blobs" in DATASETS
    (cell, _) = expand(spec)
    assert cell.imports == spec.imports
    assert "imports" not in cell.config  # bookkeeping: a moved plug-in file keeps the keys
    load_plugins(spec.imports)  # loading again is a no-op, not "already registered"


def _probed_threads(probe: Path) -> list[int]:
    """Thread counts the plug-in dataset saw in processes other than this one."""
    seen = [name.split("-") for name in os.listdir(probe)]
    return sorted(int(n) for pid, n in seen if int(pid) != os.getpid())


@pytest.mark.slow
def test_two_spawned_workers_run_plugin_cells(plugin_spec, tmp_path, capsys, monkeypatch):
    """Spawned workers start from a fresh interpreter: they must load the plug-in themselves,
    and run each cell with the cell's thread count (here 2, not the pool's cores // workers)."""
    probe = tmp_path / "probe"
    probe.mkdir()
    monkeypatch.setenv("ACTLAB_TEST_PROBE", str(probe))
    assert _run(tmp_path, plugin_spec, "--workers", "2", "--threads", "2") == 0, \
        capsys.readouterr().err
    with ResultStore(tmp_path / "r.sqlite") as store:
        rows = store.list(study="plug")
    assert [r.status for r in rows] == ["done", "done"]
    assert all(0.0 <= r.metrics["test_acc"] <= 1.0 for r in rows)
    assert all(r.config["threads"] == 2 for r in rows)  # recorded with the run, in its key
    assert _probed_threads(probe) == [2, 2]


def test_missing_and_broken_plugins_are_one_line(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text('dataset = "digits"\nmodel = "mlp"\nacts = ["relu"]\n'
                    'imports = ["./nowhere.py"]\n')
    assert _run(tmp_path, spec, "--check") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "imports[0]: plug-in file './nowhere.py' not found" in err

    (tmp_path / "broken.py").write_text("import torch\nraise RuntimeError('half written')\n")
    spec.write_text(spec.read_text().replace("nowhere", "broken"))
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    msg = str(info.value)
    assert "\n" not in msg and "broken.py" in msg and "RuntimeError: half written" in msg

    spec.write_text(spec.read_text().replace('"./broken.py"', '"no_such_pkg.layers"'))
    with pytest.raises(SpecError, match=r"plug-in 'no_such_pkg.layers': not found"):
        load_spec(spec)
    with pytest.raises(PluginError, match="'not_a_pkg_either'"):
        load_plugins(["not_a_pkg_either"])


def test_entry_point_plugins_load_in_a_fresh_process(tmp_path):
    """An installed plug-in (an ``actlab.plugins`` entry point) is found without any import."""
    site = tmp_path / "site"
    (site / "acme_layers").mkdir(parents=True)
    (site / "acme_layers" / "__init__.py").write_text(
        "from torch import nn\nfrom actlab.registry import register_act\n"
        "register_act('acme_act', nn.Tanh)\n")
    dist = site / "acme_layers-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-layers\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[actlab.plugins]\nacme = acme_layers\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(SRC)])}
    out = subprocess.run([sys.executable, "-m", "actlab.cli", "list", "acts"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "acme_act" in out.stdout.split()
    (site / "acme_layers" / "__init__.py").write_text("raise ImportError('acme is broken')\n")
    out = subprocess.run([sys.executable, "-m", "actlab.cli", "list", "acts"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "entry point acme = acme_layers" in out.stderr and "acme is broken" in out.stderr


@pytest.mark.slow
def test_ray_tasks_load_plugins_and_pin_threads(plugin_spec, tmp_path, monkeypatch):
    """A local Ray cluster (2 CPUs): each task loads the plug-in and runs with the cell's threads
    (2, although each task asks for 1 CPU); the numbers equal those of the local runner."""
    ray = pytest.importorskip("ray")
    from actlab.sweep.ray_engine import run_cells_ray, worker_runtime_env
    from actlab.sweep.runner import run_cells

    probe = tmp_path / "probe"
    probe.mkdir()
    monkeypatch.setenv("ACTLAB_TEST_PROBE", str(probe))
    cells = expand(load_spec(plugin_spec, overrides=[("threads", 2)]))
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False,
             runtime_env=worker_runtime_env())
    try:
        outcome = run_cells_ray(cells, db_path=tmp_path / "ray.sqlite", out_dir=tmp_path / "o",
                                progress=False)
    finally:
        ray.shutdown()
    assert outcome.ok and outcome.done == 2, outcome.failed
    assert _probed_threads(probe) == [2, 2]
    local = run_cells(cells, db_path=tmp_path / "local.sqlite", out_dir=tmp_path / "l",
                      progress=False)
    assert local.ok
    with ResultStore(tmp_path / "ray.sqlite") as a, ResultStore(tmp_path / "local.sqlite") as b:
        for cell in cells:
            ra, rb = a.get(cell.key), b.get(cell.key)
            assert ra.config["threads"] == 2
            assert _numbers(ra.metrics) == _numbers(rb.metrics)


def _numbers(metrics: dict) -> dict:
    """Metrics without timings (which differ between runs)."""
    return {k: v for k, v in metrics.items() if "time" not in k and "sec" not in k}
