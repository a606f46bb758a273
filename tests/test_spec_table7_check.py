"""``actlab run specs/paper/sau_table7_transformer_wmt14.toml --check --data-dir DIR`` on
fabricated WMT'14 files: the spec validates, the files are read and every cell is listed; a
missing file fails in one line naming it."""

from __future__ import annotations

from pathlib import Path

from actlab.cli import main

SPEC = Path(__file__).resolve().parent.parent / "specs/paper/sau_table7_transformer_wmt14.toml"
EN = ["the house is small .", "the tree is green .", "a small house .", "the green tree ."]
DE = ["das Haus ist klein .", "der Baum ist grün .", "ein kleines Haus .", "der grüne Baum ."]


def _fabricate(root: Path, skip: str | None = None) -> None:
    folder = root / "wmt14_en_de"
    folder.mkdir(parents=True)
    for prefix in ("train", "newstest2013", "newstest2014"):
        for lang, lines in (("en", EN), ("de", DE)):
            if f"{prefix}.{lang}" != skip:
                (folder / f"{prefix}.{lang}").write_text("\n".join(lines) + "\n",
                                                         encoding="utf-8")


def test_check_passes_on_fabricated_wmt_files(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ACTLAB_CACHE", str(tmp_path / "cache"))
    _fabricate(tmp_path / "data")
    assert main(["run", str(SPEC), "--check", "--data-dir", str(tmp_path / "data"),
                 "--db", str(tmp_path / "r.sqlite"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "transformer_base on wmt, 50 cells" in out  # 10 activations x 5 seeds
    assert not (tmp_path / "r.sqlite").exists()  # --check trains nothing


def test_check_names_a_missing_file_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ACTLAB_CACHE", str(tmp_path / "cache"))
    _fabricate(tmp_path / "data", skip="newstest2013.de")
    code = main(["run", str(SPEC), "--check", "--data-dir", str(tmp_path / "data")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "newstest2013.de" in err and len(err.splitlines()) == 1, err
