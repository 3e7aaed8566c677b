"""The README's figures come from committed reports: each excerpt block is what its report says, and a block
that says anything else is found (odperf.report.readme, ``odperf readme --check``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from odperf.errors import OdperfError
from odperf.report import readme

ROOT = Path(__file__).resolve().parents[1]
REPORT = """# odperf tables

## Time per image by model

| device   | model   |   batch |   mean s/img |
|----------|---------|---------|--------------|
| cpu      | tiny    |       1 |       0.489  |
| cpu      | tiny    |      64 |       0.2024 |
"""
SPEC = '<!-- odperf:excerpt source="r/tables.md" section="Time per image" columns="model,mean s/img" rows="cpu/tiny/64" -->'


def test_every_readme_excerpt_is_what_its_committed_report_says():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(list(readme.BLOCK.finditer(text))) >= 2  # the real report's excerpts are blocks
    assert readme.stale_blocks(text, ROOT) == []


def test_a_figure_the_report_does_not_hold_is_found_and_rebuilt(tmp_path: Path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "tables.md").write_text(REPORT)
    text = f"intro\n{SPEC}\n| model | mean s/img |\n|---|---|\n| tiny | 0.087 |\n<!-- /odperf:excerpt -->\nend\n"
    assert readme.stale_blocks(text, tmp_path) == [SPEC[len("<!-- odperf:excerpt "):-len(" -->")]]
    fresh = readme.update(text, tmp_path)
    assert "| tiny    | 0.2024       |" in fresh and "0.087" not in fresh and fresh.endswith("end\n")
    assert readme.stale_blocks(fresh, tmp_path) == [] and readme.update(fresh, tmp_path) == fresh
    readme_file = tmp_path / "README.md"
    readme_file.write_text(text)
    check = subprocess.run([sys.executable, "-m", "odperf.cli", "readme", str(readme_file), "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 1 and "stale excerpt" in check.stdout and readme_file.read_text() == text
    done = subprocess.run([sys.executable, "-m", "odperf.cli", "readme", str(readme_file)], capture_output=True,
                          text=True)
    assert done.returncode == 0 and readme_file.read_text() == fresh


def test_an_excerpt_of_a_row_the_report_lacks_is_refused(tmp_path: Path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "tables.md").write_text(REPORT)
    text = SPEC.replace("cpu/tiny/64", "cpu/tiny/8") + "\n<!-- /odperf:excerpt -->\n"
    with pytest.raises(OdperfError, match="no row cpu/tiny/8"):
        readme.update(text, tmp_path)
