"""docs/RESULTS.md must be what `actlab report --page` makes of the committed store, and every
claim block must carry a verdict."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from actlab.report.results_page import VERDICTS, read_claim_blocks, write_results_page

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.skipif(not (DOCS / "results.sqlite").is_file(), reason="no committed store")
def test_results_page_tables_match_the_committed_store(tmp_path):
    fresh = write_results_page(DOCS / "results.sqlite", tmp_path / "RESULTS.md", tmp_path / "fig",
                               figures=False, activations=False, keep_claims=False)
    committed = (DOCS / "RESULTS.md").read_text(encoding="utf-8")
    table_rows = [line for line in fresh.read_text(encoding="utf-8").splitlines()
                  if line.startswith("|")]
    assert len(table_rows) > 50
    missing = [row for row in table_rows if row not in committed]
    assert not missing, f"docs/RESULTS.md is stale; first differing row: {missing[0]}"


def test_every_claim_block_has_verdicts():
    blocks = read_claim_blocks(DOCS / "RESULTS.md")
    studies = set(re.findall(r"^## Study `([^`]+)`", (DOCS / "RESULTS.md").read_text(), re.M))
    assert set(blocks) == {None} | studies
    for key, text in blocks.items():
        verdicts = re.findall(r"^- \*\*([a-z ]+)\*\*", text, re.M)
        assert verdicts and set(verdicts) <= set(VERDICTS), key
