"""Seq2seq data: the SCAN-style grammar (hand-checked meanings, size, determinism), the BPE
tokenizer (ids, determinism, cache), the split pipeline and the WMT-style reader on fabricated
files."""

from __future__ import annotations

import pytest
import torch

from actlab.data import DatasetError, dataset_options, list_datasets, load_dataset
from actlab.data.bpe import SPECIALS, cached_bpe, decode_ids, encode_lines, train_bpe
from actlab.data.scan import NUM_SCAN_COMMANDS, scan_commands, scan_meaning, scan_pairs
from actlab.tasks.seq2seq import Seq2SeqTask


@pytest.mark.parametrize(("command", "actions"), [
    ("jump", "JUMP"),
    ("turn left", "LTURN"),
    ("jump twice and walk left", "JUMP JUMP LTURN WALK"),
    ("walk opposite right thrice", "RTURN RTURN WALK RTURN RTURN WALK RTURN RTURN WALK"),
    ("turn around left", "LTURN LTURN LTURN LTURN"),
    ("look around right after run", "RUN RTURN LOOK RTURN LOOK RTURN LOOK RTURN LOOK"),
    ("turn opposite left twice and jump right", "LTURN LTURN LTURN LTURN RTURN JUMP"),
    ("run after turn right thrice", "RTURN RTURN RTURN RUN"),
])
def test_hand_checked_meanings(command, actions):
    assert scan_meaning(command) == actions


def test_grammar_size_and_lengths():
    cmds = scan_commands()
    assert len(cmds) == len(set(cmds)) == NUM_SCAN_COMMANDS == 20_910
    lengths = [len(scan_meaning(c).split()) for c in cmds]
    assert min(lengths) == 1 and max(lengths) == 48  # as in Lake & Baroni 2018
    assert max(len(c.split()) for c in cmds) == 9
    assert "jump around left twice and look opposite right thrice" in set(cmds)
    for bad in ("jump jump", "turn", "walk sideways", "fly", "look around"):
        with pytest.raises(ValueError, match="not a SCAN verb phrase"):
            scan_meaning(bad)


def test_scan_pairs_are_deterministic_samples():
    a, b = scan_pairs(300, data_seed=3), scan_pairs(300, data_seed=3)
    assert a == b
    assert scan_pairs(300, data_seed=4)[0] != a[0]
    assert len(set(a[0])) == 300 and all(scan_meaning(c) == m for c, m in zip(*a, strict=True))
    with pytest.raises(ValueError, match="num_samples"):
        scan_pairs(0)


def test_bpe_specials_determinism_and_roundtrip(tmp_path):
    lines = ["jump twice and walk left", "JUMP JUMP LTURN WALK", "Ein Haus , ein Baum ."] * 5
    a, b = train_bpe(lines, 80), train_bpe(lines, 80)
    assert a.to_str() == b.to_str()
    assert [a.token_to_id(s) for s in SPECIALS] == [0, 1, 2, 3]
    ids, lengths = encode_lines(a, ["walk left", "JUMP"], bos=True)
    assert ids.shape == (2, lengths.max()) and lengths[1] < lengths[0]
    assert ids[0, 0] == 1 and ids[0, lengths[0] - 1] == 2 and set(ids[1, lengths[1]:]) == {0}
    assert decode_ids(a, ids.tolist()) == ["walk left", "JUMP"]
    assert decode_ids(None, [[1, 7, 9, 2, 0]]) == ["7 9"]
    tok, path = cached_bpe("t", lines, 80, cache_dir=tmp_path)
    assert path.parent == tmp_path / "tokenizers" and path.is_file()
    assert tok.to_str() == a.to_str()
    mtime = path.stat().st_mtime_ns
    tok2, path2 = cached_bpe("t", lines, 80, cache_dir=tmp_path)
    assert path2 == path and path.stat().st_mtime_ns == mtime  # reused, not retrained
    _, other = cached_bpe("t", lines[:-1], 80, cache_dir=tmp_path)
    assert other != path
    with pytest.raises(ValueError, match="vocab_size"):
        train_bpe(lines, 4)


def test_scan_dataset_splits(tmp_path):
    assert {"scan", "wmt"} <= set(list_datasets())
    assert "num_samples" in dataset_options("scan")
    d = load_dataset("scan", num_samples=500, cache_dir=tmp_path)
    assert d.task == "seq2seq" and d.sizes == {"train": 360, "val": 40, "test": 100}
    x, y = d.train.padded()
    assert x.dtype == y.dtype == torch.int64 and d.input_shape == (x.shape[1],)
    assert d.num_classes == d.meta["vocab_size"]
    assert d.meta["task_options"] == {"tokenizer": d.meta["tokenizer"]}
    task = Seq2SeqTask(d.num_classes, tokenizer=d.meta["tokenizer"])
    for split in ("train", "val", "test"):
        task.check_targets(split, getattr(d, split).targets)  # ragged rows
    # every pair decodes back to a command and its meaning
    src = task.detokenize(task.references(torch.cat([torch.ones_like(x[:, :1]), x], 1)))
    tgt = task.detokenize(task.references(y))
    assert all(scan_meaning(s) == t for s, t in zip(src, tgt, strict=True))
    again = load_dataset("scan", num_samples=500, cache_dir=tmp_path)
    for split in ("train", "val", "test"):
        for t1, t2 in zip(getattr(d, split).padded(), getattr(again, split).padded(), strict=True):
            assert torch.equal(t1, t2)
    other = load_dataset("scan", num_samples=500, seed=1, cache_dir=tmp_path)
    test_a = task.detokenize(task.references(d.test.padded()[1]))
    other_task = Seq2SeqTask(other.num_classes, tokenizer=other.meta["tokenizer"])
    assert other_task.detokenize(other_task.references(other.test.padded()[1])) == test_a
    assert not torch.equal(other.val.padded()[1][:5], d.val.padded()[1][:5])


def _write(folder, name, lines):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(f"{s}\n" for s in lines), encoding="utf-8")


EN = ["the house is small .", "the tree is green .", "a small tree .", "the house .",
      "green is the tree .", "", "a house is a house ."]
DE = ["das Haus ist klein .", "der Baum ist grün .", "ein kleiner Baum .", "das Haus .",
      "grün ist der Baum .", "leer", "ein Haus ist ein Haus ."]


def test_wmt_reader_on_fabricated_files(tmp_path):
    root = tmp_path / "data" / "wmt14_en_de"
    _write(root, "train.en", EN * 4)
    _write(root, "train.de", DE * 4)
    _write(root, "newstest2014.en", ["the small house .", "a green tree ."])
    _write(root, "newstest2014.de", ["das kleine Haus .", "ein grüner Baum ."])
    d = load_dataset("wmt", data_dir=tmp_path / "data", vocab_size=120, val_fraction=0.25,
                     cache_dir=tmp_path / "cache")
    assert d.task == "seq2seq"
    assert d.sizes == {"train": 18, "val": 6, "test": 2}  # the 4 empty-source pairs dropped
    task = Seq2SeqTask(d.num_classes, tokenizer=d.meta["tokenizer"])
    assert task.detokenize(task.references(d.test.padded()[1])) == ["das kleine Haus .",
                                                                   "ein grüner Baum ."]
    src = d.test.padded()[0]
    assert decode_ids(task.tokenizer, src.tolist()) == ["the small house .", "a green tree ."]
    # official validation set, other direction
    _write(root, "newstest2013.en", ["the tree ."])
    _write(root, "newstest2013.de", ["der Baum ."])
    d = load_dataset("wmt", data_dir=tmp_path / "data", vocab_size=120, valid="newstest2013",
                     src_lang="de", tgt_lang="en", cache_dir=tmp_path / "cache")
    assert d.sizes == {"train": 24, "val": 1, "test": 2}
    task = Seq2SeqTask(d.num_classes, tokenizer=d.meta["tokenizer"])
    assert task.detokenize(task.references(d.val.padded()[1])) == ["the tree ."]
    # long training pairs are dropped with max_tokens
    d = load_dataset("wmt", data_dir=tmp_path / "data", vocab_size=120, max_tokens=5,
                     val_fraction=0.0, cache_dir=tmp_path / "cache")
    assert 0 < d.sizes["train"] < 24 and d.meta["dropped_long_train_pairs"] > 0
    assert int((d.train.padded()[1] != 0).sum(1).max()) <= 5


def test_wmt_reader_errors(tmp_path):
    root = tmp_path / "wmt14_en_de"
    _write(root, "train.en", EN)
    with pytest.raises(DatasetError, match=r"wmt: missing file .*train\.de$"):
        load_dataset("wmt", data_dir=tmp_path, cache_dir=tmp_path)
    _write(root, "train.de", DE[:-1])
    with pytest.raises(DatasetError) as err:
        load_dataset("wmt", data_dir=tmp_path, cache_dir=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "train.en has 7 lines but" in msg and "train.de has 6" in msg
    _write(root, "train.de", DE)
    with pytest.raises(DatasetError, match=r"missing file .*newstest2014\.en"):
        load_dataset("wmt", data_dir=tmp_path, cache_dir=tmp_path)
    (root / "newstest2014.en").write_bytes(b"caf\xe9\n")
    _write(root, "newstest2014.de", ["x"])
    with pytest.raises(DatasetError, match=r"newstest2014\.en is not UTF-8"):
        load_dataset("wmt", data_dir=tmp_path, cache_dir=tmp_path)
    with pytest.raises(TypeError, match="does not accept"):
        load_dataset("wmt", data_dir=tmp_path, nonsense=1)


def test_scan_length_split(tmp_path):
    d = load_dataset("scan", num_samples=600, split="length", cache_dir=tmp_path)
    task = Seq2SeqTask(d.num_classes, tokenizer=d.meta["tokenizer"])
    n_words = {k: [len(t.split()) for t in task.detokenize(task.references(s.padded()[1]))]
               for k, s in (("train", d.train), ("val", d.val), ("test", d.test))}
    assert min(n_words["test"]) > 22 and max(n_words["train"] + n_words["val"]) <= 22
    assert sum(d.sizes.values()) == 600 and 0.1 < d.sizes["test"] / 600 < 0.3
    with pytest.raises(ValueError, match="scan split must be"):
        load_dataset("scan", split="jump", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="length_cutoff=60"):
        load_dataset("scan", split="length", length_cutoff=60, cache_dir=tmp_path)
