"""``odperf dataset make`` and ``odperf dataset check``, through the sub-command parser."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from odperf.datasets import cli, synthetic
from odperf.errors import DatasetError


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="odperf")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_make_then_check(tmp_path: Path, capsys) -> None:
    assert _run(["dataset", "make", "--cache-dir", str(tmp_path), "--val", "12", "--train", "0"]) == 0
    root = Path(capsys.readouterr().out.strip())
    assert root.parent == tmp_path and (root / "annotations" / "instances_val2017.json").is_file()
    assert _run(["dataset", "check", str(root)]) == 0
    out = capsys.readouterr().out
    assert "12 images" in out and "decoded 12 images" in out and "300x300 (12)" in out
    assert "1 disk" in out and "objects by COCO size" in out


def test_check_finds_a_broken_image(tmp_path: Path) -> None:
    synthetic.generate(tmp_path, "val2017", 5)
    victim = sorted((tmp_path / "val2017").iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:100])
    assert _run(["dataset", "check", str(tmp_path), "--images", "3"]) == 0
    with pytest.raises(DatasetError, match=victim.name):
        _run(["dataset", "check", str(tmp_path)])
