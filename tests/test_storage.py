"""Results files are replaced whole or not at all; folders that cannot take a file are named up front."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from odperf.util.atomic import StorageError, check_file, check_folder, write_atomic


def test_write_atomic_replaces_the_file_and_leaves_no_temp_file(tmp_path: Path):
    target = tmp_path / "run.json"
    target.write_text('{"old": true}')
    write_atomic(target, json.dumps({"new": True}))
    assert json.loads(target.read_text()) == {"new": True}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's 0600


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# A child process whose files may not grow past a few kB (RLIMIT_FSIZE, SIGXFSZ ignored): the write of a
# larger file fails half-way, as on a full disk.
_FULL_DISK = """
import resource, signal, sys
from odperf.util.atomic import write_atomic
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    write_atomic(sys.argv[1], "x" * 100_000)
except OSError as exc:
    print("failed:", exc.strerror)
"""


def test_a_write_that_fails_half_way_keeps_the_previous_file(tmp_path: Path):
    target = tmp_path / "run.json"
    target.write_text('{"previous": "good"}')
    out = subprocess.run([sys.executable, "-c", _FULL_DISK, str(target)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("failed:")
    assert json.loads(target.read_text()) == {"previous": "good"}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # the partial temp file is gone too


def test_check_folder_creates_or_names_the_fault(tmp_path: Path):
    assert check_folder(tmp_path / "a" / "b", "--results", create=True, fix="fix it").is_dir()
    with pytest.raises(StorageError, match=r"--results .*/missing does not exist; create it \(mkdir -p"):
        check_folder(tmp_path / "missing", "--results", create=False, fix="fix it")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(StorageError, match="is a file, not a folder; fix it"):
        check_folder(a_file, "--results", create=True, fix="fix it")
    with pytest.raises(StorageError, match=r"cannot be created \(Not a directory\); fix it"):
        check_folder(a_file / "sub", "--results", create=True, fix="fix it")


def test_check_file_wants_an_existing_writable_folder(tmp_path: Path):
    assert check_file(tmp_path / "run.json", "--benchmark-json", fix="f") == tmp_path / "run.json"
    with pytest.raises(StorageError, match="its folder .* does not exist"):
        check_file(tmp_path / "nope" / "run.json", "--benchmark-json", fix="f")
    with pytest.raises(StorageError, match="is a folder; give a file name"):
        check_file(tmp_path, "--benchmark-json", fix="f")
    assert not list(tmp_path.glob(".odperf-write-check-*"))


def test_benchmark_json_given_as_a_path_or_as_the_file_older_pytest_benchmark_opened(tmp_path):
    """pytest-benchmark 5.3 parses --benchmark-json into a Path; 5.1 and 5.2 (argparse.FileType('wb')) into
    an open file, which left an empty file and crashed the run on a GPU image with 5.2.3."""
    import argparse

    from odperf.plugin.files import json_target

    target = tmp_path / "run.json"
    opened = argparse.FileType("wb")(str(target))
    assert json_target(opened) == target and opened.closed
    assert json_target(target) == target and json_target(str(target)) == target
    assert json_target(None) is None


def test_a_benchmark_stopped_inside_its_first_round_is_left_out_not_the_whole_file():
    """pytest-benchmark's statistics of a benchmark with no round raise: one such benchmark (a stream
    stopped by Ctrl-C inside its one round) made the whole results file unwritable."""
    from types import SimpleNamespace

    from pytest_benchmark.stats import Stats

    from odperf.plugin.files import measured

    done, stopped = SimpleNamespace(stats=Stats()), SimpleNamespace(stats=Stats())
    done.stats.update(0.25)
    with pytest.raises(Exception):
        stopped.stats.as_dict()  # what writing the file met
    assert measured([done, stopped]) == [done] and done.stats.as_dict()["rounds"] == 1


SAVER = """
import sys, time
from pathlib import Path
from odperf.util.atomic import write_numbered
folder, me, go = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
while time.time() < go:  # every process saves at the same instant
    pass
print(write_numbered(folder, "run", '{"saved_by": "%s"}' % me, start=1).name)
"""


def test_saves_at_one_instant_never_overwrite_a_saved_run(tmp_path: Path):
    """Eight processes save a run into one storage folder at the same instant, all told number 0001 is
    next (as pytest-benchmark's count said before any of them saved): eight files, each whole, none lost."""
    import time

    (tmp_path / "0001_run.json").write_text('{"saved_by": "earlier"}')  # the number they are all given
    go = time.time() + 3.0
    procs = [subprocess.Popen([sys.executable, "-c", SAVER, str(tmp_path), str(i), str(go)], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})
             for i in range(8)]
    names = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(names) == [f"{n:04d}_run.json" for n in range(2, 10)]
    owners = {json.loads((tmp_path / n).read_text())["saved_by"] for n in names}
    assert owners == {str(i) for i in range(8)}
    assert json.loads((tmp_path / "0001_run.json").read_text()) == {"saved_by": "earlier"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0001_run.json", *sorted(names)]  # no temporary left


def test_without_hard_links_a_save_reserves_its_number_exclusively(tmp_path: Path, monkeypatch):
    from odperf.util import atomic as storage

    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(storage.os, "link", no_links)
    (tmp_path / "0003_run.json").write_text("{}")
    assert storage.write_numbered(tmp_path, "run", '{"a": 1}', start=3).name == "0004_run.json"
    assert storage.write_numbered(tmp_path, "run", '{"a": 2}').name == "0005_run.json"
    assert (tmp_path / "0003_run.json").read_text() == "{}" and json.loads((tmp_path / "0004_run.json").read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0003_run.json", "0004_run.json", "0005_run.json"]
