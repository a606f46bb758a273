"""actlab status / export and actlab.load_runs on fabricated stores."""

from __future__ import annotations

import csv
import math
import time

import pytest

import actlab
from actlab.cli import main
from actlab.store import ResultStore, make_owner
from actlab.store.frame import LONG_COLUMNS, history_records
from actlab.sweep.grid import expand
from actlab.sweep.spec import parse_spec
from actlab.sweep.status import cell_statuses, format_status
from test_report_fixtures import add_run, connect, fake_history, make_layer_store


@pytest.fixture
def store_path(tmp_path):
    """Done runs of study 'acts' (45), plus: one failed, one interrupted, one running with a
    live lease after 2 of 6 epochs (epoch_time 0.5 s)."""
    db = make_layer_store(tmp_path / "r.sqlite", cells=1)  # 15 done + failed + running
    con = connect(db)
    key = add_run(con, study="acts", dataset="digits", model="mlp", act="sau", norm="bn",
                  seed=7, history=fake_history(0.8)[:2], status="running")
    con.claim(key, "otherhost:42:beef", lease_s=600)
    con.close()
    return db, key


def test_status_lists_states_owner_and_eta(store_path, capsys):
    db, running_key = store_path
    with ResultStore(db, readonly=True) as store:
        states = {s.key: s for s in cell_statuses(store, study="acts")}
    counts = {}
    for s in states.values():
        counts[s.state] = counts.get(s.state, 0) + 1
    assert counts == {"done": 15, "failed": 1, "interrupted": 1, "running": 1}
    run = states[running_key]
    assert run.owner == "otherhost:42:beef" and run.epochs_done == 2 and run.epochs_total == 6
    assert run.eta_s == pytest.approx(4 * 0.5)
    assert 0 <= run.heartbeat_age_s < 60
    text = format_status(list(states.values()))
    assert text.splitlines()[0] == ("study 'acts': 18 cells: 15 done, 1 running, "
                                    "1 interrupted, 1 failed, 0 pending; running cells end in 2s")
    assert main(["status", "--db", str(db), "--study", "acts"]) == 0
    out = capsys.readouterr().out
    assert "owner otherhost:42:beef" in out and "ETA 2s" in out
    assert main(["status", "--db", str(db), "--totals"]) == 0
    assert capsys.readouterr().out.count("\n") == 2  # studies 'acts' and 'other'


def test_status_of_a_spec_counts_cells_without_rows_as_pending(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text('name = "s"\ndataset = "digits"\nmodel = "tiny_cnn"\n'
                    'acts = ["relu", "elu"]\nseeds = [0]\nepochs = 2\n')
    cells = expand(parse_spec({"name": "s", "dataset": "digits", "model": "tiny_cnn",
                               "acts": ["relu", "elu"], "seeds": [0], "epochs": 2},
                              source="s.toml"))
    db = tmp_path / "r.sqlite"
    with ResultStore(db) as store:
        c = cells[0]
        store.start(c.key, study=c.study, dataset=c.dataset, model=c.model, act=c.act,
                    norm=c.norm, seed=c.seed, config=c.config)
        store.finish(c.key, metrics={"test_acc": 0.9}, history=[{"epoch": 1}, {"epoch": 2}])
    assert main(["status", str(spec), "--db", str(db)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "study 's': 2 cells: 1 done, 0 running, 0 interrupted, 0 failed, 1 pending"
    assert out[1].split()[:2] == ["done", c.key[:12]] and "2/2 ep" in out[1]
    assert out[2].split()[0] == "pending" and "0/2 ep" in out[2]
    assert main(["status", "--db", str(tmp_path / "none.sqlite")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("actlab status: error: results store") and err.count("\n") == 1


def _expected_long(db):
    """The long table computed straight from the stored rows (independent of frame.py)."""
    out = []
    with ResultStore(db, readonly=True) as store:
        for row in store.list(status="done"):
            for rec in row.history:
                flat = {}
                for k, v in rec.items():
                    if k == "layer_stats":
                        for mod, stats in v.items():
                            for stat, x in stats.items():
                                flat[f"layer_stats.{mod}.{stat}"] = x
                    elif k != "epoch":
                        flat[k] = v
                for metric, value in flat.items():
                    out.append((row.study, row.act, row.seed, row.cell_key, rec["epoch"],
                                metric, float(value)))
    return sorted(out)


def test_export_csv_and_parquet_long_format(tmp_path, capsys):
    db = make_layer_store(tmp_path / "r.sqlite")
    expected = _expected_long(db)
    assert len(expected) > 1000
    csv_path, pq_path = tmp_path / "h.csv", tmp_path / "sub" / "h.parquet"
    assert main(["export", "--db", str(db), "-o", str(csv_path)]) == 0
    assert main(["export", "--db", str(db), "--format", "parquet", "-o", str(pq_path)]) == 0
    assert f"wrote {len(expected)} rows" in capsys.readouterr().out
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == LONG_COLUMNS
        got = sorted((r["study"], r["act"], int(r["seed"]), r["cell_key"], int(r["epoch"]),
                      r["metric"], float(r["value"])) for r in reader)
    assert got == expected  # repr() round-trips floats exactly
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(pq_path).to_pylist()
    assert list(table[0]) == list(LONG_COLUMNS)
    assert sorted((r["study"], r["act"], r["seed"], r["cell_key"], r["epoch"], r["metric"],
                   r["value"]) for r in table) == expected
    assert main(["export", "--db", str(db), "-o", str(tmp_path / "h.xlsx")]) == 2
    assert "csv or parquet" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.tmp"))


def test_export_keeps_nan(tmp_path):
    db = tmp_path / "r.sqlite"
    con = connect(db)
    add_run(con, study="s", dataset="d", model="m", act="relu", norm="bn", seed=0,
            history=[{"epoch": 1, "val_loss": math.nan, "val_acc": 0.5}],
            metrics={"val_acc": 0.5})
    con.close()
    recs = {r["metric"]: r["value"] for r in history_records(db)}
    assert math.isnan(recs["val_loss"]) and recs["val_acc"] == 0.5


def test_load_runs_dataframe_one_row_per_run(tmp_path):
    pd = pytest.importorskip("pandas")
    db = make_layer_store(tmp_path / "r.sqlite")
    df = actlab.load_runs(db)
    assert isinstance(df, pd.DataFrame) and len(df) == 46 and df.cell_key.is_unique
    with ResultStore(db, readonly=True) as store:
        rows = {r.cell_key: r for r in store.list(status="done")}
    for rec in df.to_dict("records"):
        row = rows[rec["cell_key"]]
        assert rec["test_acc"] == row.metrics["test_acc"] and rec["act"] == row.act
        assert rec["config.train.lr"] == row.config["train"]["lr"] and rec["epochs"] == 6
    acts = actlab.load_runs(db, "acts")
    assert len(acts) == 45 and set(acts.study) == {"acts"}
    means = acts.groupby("act")["test_acc"].mean()
    assert means["sau"] > means["relu"]
    assert len(actlab.load_runs(db, status=None)) == 48
    assert set(actlab.load_runs(db, status="failed").status) == {"failed"}
    empty = actlab.load_runs(db, "nope")
    assert len(empty) == 0 and "test_acc" not in empty.columns and "act" in empty.columns


def test_status_sees_a_live_lease_of_this_process(tmp_path):
    db = tmp_path / "r.sqlite"
    with ResultStore(db) as store:
        owner = make_owner()
        store.claim("k", owner, lease_s=30)
        (s,) = cell_statuses(store, cells=[type("C", (), {"key": "k", "study": "x",
                                                         "label": "l", "epochs": 3})()],
                             now=time.time())
    assert s.state == "running" and s.owner == owner and s.eta_s is None
