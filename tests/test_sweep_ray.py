"""Ray engine: a clear error without ray; with ray, the same rows as the local runner."""

from __future__ import annotations

import importlib.util
import textwrap

import pytest

from actlab.cli import main
from actlab.sweep.grid import expand
from actlab.sweep.spec import parse_spec
from actlab.sweep.store import ResultStore

HAS_RAY = importlib.util.find_spec("ray") is not None
SPEC = {"name": "ray", "dataset": "digits", "model": "tiny_cnn", "acts": ["relu", "elu"],
        "seeds": [0, 1], "epochs": 3, "resources": {"cpus": 1}}


@pytest.mark.skipif(HAS_RAY, reason="checks the message shown when ray is missing")
def test_engine_ray_without_ray_exits_2_with_a_hint(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text(textwrap.dedent("""
        dataset = "digits"
        model = "tiny_cnn"
        acts = ["relu"]
    """))
    code = main(["run", str(spec), "--engine", "ray", "--dry-run", "--no-progress",
                 "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("actlab run: error: --engine ray needs the 'ray' package")
    assert "pip install 'actlab[ray]'" in err and "\n" not in err


@pytest.mark.slow
def test_real_ray_runs_a_real_two_cell_sweep_into_the_store(tmp_path):
    """A local Ray with 2 CPUs, real data/model/training in the Ray workers, the driver writing
    the store; a second run skips both cells; the simulated executor gives the same rows as the
    local runner."""
    ray = pytest.importorskip("ray")
    from actlab.sweep.ray_engine import run_cells_ray, worker_runtime_env
    from actlab.sweep.runner import run_cells

    spec = {**SPEC, "seeds": [0], "epochs": 2, "batch_size": 64, "device": "cpu"}
    cells = expand(parse_spec(spec, source="ray.toml"))
    assert len(cells) == 2
    db, out = tmp_path / "ray.sqlite", tmp_path / "o"
    sim = "actlab.sweep.simulate:simulate_cell"
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False,
             runtime_env=worker_runtime_env())
    try:
        outcome = run_cells_ray(cells, db_path=db, out_dir=out, progress=False)
        again = run_cells_ray(cells, db_path=db, out_dir=out, progress=False)
        simulated = run_cells_ray(cells, db_path=tmp_path / "sim.sqlite", out_dir=out,
                                  executor=sim, progress=False)
    finally:
        ray.shutdown()
    assert outcome.ok and outcome.done == 2, outcome.failed
    assert (again.done, again.skipped) == (0, 2)
    assert simulated.ok and simulated.done == 2
    with ResultStore(db) as store:
        rows = store.list()
    assert sorted(r.cell_key for r in rows) == sorted(c.key for c in cells)
    for row in rows:
        assert row.status == "done" and [h["epoch"] for h in row.history] == [1, 2]
        assert 0.5 < row.metrics["test_acc"] <= 1.0  # digits: learnt something in 2 epochs
        assert row.metrics["test_acc"] == pytest.approx(row.history[-1]["test_acc"])
        assert row.versions["torch"] and row.wall_time > 0
    assert not list((out / "checkpoints").glob("*.pt"))  # removed once done
    run_cells(cells, db_path=tmp_path / "local.sqlite", out_dir=tmp_path / "l", executor=sim,
              progress=False)
    with ResultStore(tmp_path / "sim.sqlite") as a, ResultStore(tmp_path / "local.sqlite") as b:
        ra, rb = a.list(), b.list()
    assert [(r.cell_key, r.status, r.metrics, r.history) for r in ra] == [
        (r.cell_key, r.status, r.metrics, r.history) for r in rb]


def _fake_ray(monkeypatch):
    """A tiny in-process stand-in for the parts of the ray API the engine uses (tasks run
    synchronously at submission). It checks the driver logic, not ray itself."""
    import queue as queue_mod
    import sys
    import types

    ray = types.ModuleType("ray")
    util = types.ModuleType("ray.util")
    rq = types.ModuleType("ray.util.queue")
    exceptions = types.ModuleType("ray.exceptions")

    class RayError(Exception):
        pass

    class Empty(queue_mod.Empty):
        pass

    class Queue:
        def __init__(self, maxsize=0, actor_options=None):
            self._q = queue_mod.Queue()

        def put(self, item, block=True, timeout=None):
            self._q.put(item)

        def get_nowait(self):
            try:
                return self._q.get_nowait()
            except queue_mod.Empty:
                raise Empty from None

        def shutdown(self, force=False, grace_period_s=5):
            pass

    class Ref:
        def __init__(self, value=None, error=None):
            self.value, self.error = value, error

    submitted = []

    def remote(fn):
        class Remote:
            def options(self, **kw):
                submitted.append(kw)
                return self

            def remote(self, *args):
                try:
                    return Ref(fn(*args))
                except SystemExit as exc:  # a dying worker
                    return Ref(error=RayError(f"worker died ({exc.code})"))

        return Remote()

    def wait(refs, num_returns=1, timeout=None):
        return refs[:num_returns], refs[num_returns:]

    def get(ref):
        if ref.error is not None:
            raise ref.error
        return ref.value

    ray.remote = remote
    ray.wait = wait
    ray.get = get
    ray.init = lambda **kw: None
    ray.is_initialized = lambda: True
    ray.cancel = lambda ref, force=False: None
    ray.exceptions = exceptions
    ray.util = util
    exceptions.RayError = RayError
    rq.Queue, rq.Empty = Queue, Empty
    util.queue = rq
    for name, mod in (("ray", ray), ("ray.util", util), ("ray.util.queue", rq),
                      ("ray.exceptions", exceptions)):
        monkeypatch.setitem(sys.modules, name, mod)
    return submitted


def test_ray_driver_logic_with_a_fake_ray(tmp_path, monkeypatch):
    import torch

    from actlab.sweep.ray_engine import run_cells_ray
    from actlab.sweep.runner import FAULT_ENV

    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # tasks run in this process
    submitted = _fake_ray(monkeypatch)
    cells = expand(parse_spec({**SPEC, "resources": {"cpus": 2, "gpus": 0.5}},
                              source="ray.toml"))
    db, out = tmp_path / "r.sqlite", tmp_path / "o"
    sim = "actlab.sweep.simulate:simulate_cell"
    monkeypatch.setenv(FAULT_ENV, f"{cells[1].key[:12]}@2")
    outcome = run_cells_ray(cells, db_path=db, out_dir=out, executor=sim, progress=False)
    assert submitted[0] == {"num_cpus": 2.0, "num_gpus": 0.5}
    assert outcome.done == 3 and list(outcome.failed) == [cells[1].key]
    with ResultStore(db) as store:
        row = store.get(cells[1].key)
        assert row.status == "failed" and [h["epoch"] for h in row.history] == [1, 2]
        assert "FaultInjected" in row.error and row.versions["torch"]
    monkeypatch.delenv(FAULT_ENV)
    outcome = run_cells_ray(cells, db_path=db, out_dir=out, executor=sim, progress=False)
    assert (outcome.done, outcome.skipped, outcome.ok) == (1, 3, True)
    with ResultStore(db) as store:
        rows = store.list()
    assert len(rows) == 4 and all(r.status == "done" for r in rows)
    assert all([h["epoch"] for h in r.history] == [1, 2, 3] for r in rows)


def test_ray_driver_claims_leases_and_waits_for_a_foreign_one(tmp_path, monkeypatch):
    import time

    import torch

    from actlab.sweep.ray_engine import run_cells_ray

    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    submitted = _fake_ray(monkeypatch)
    cells = expand(parse_spec(SPEC, source="ray.toml"))
    db, out = tmp_path / "r.sqlite", tmp_path / "o"
    with ResultStore(db) as store:
        store.claim(cells[0].key, "otherhost:9:abcd", lease_s=1.0)
    t0 = time.monotonic()
    outcome = run_cells_ray(cells, db_path=db, out_dir=out, executor="actlab.sweep.simulate:"
                            "simulate_cell", progress=False, lease_s=2.0)
    assert outcome.ok and outcome.done == 4 and len(submitted) == 4
    assert time.monotonic() - t0 >= 0.9  # the foreign lease was waited for until it expired
    with ResultStore(db) as store:
        assert store.leases() == {} and all(r.status == "done" for r in store.list())
