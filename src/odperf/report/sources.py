"""Which saved runs a report reads: files, storage folders and glob patterns, each run read once.

pytest-benchmark can write one run twice: ``--benchmark-json FILE`` and its saved copy
``<storage>/NNNN_NAME.json``. Both hold the same machine, commit, benchmarks and odperf records (only the
``datetime`` of each write and, without --benchmark-save-data, the rounds' raw data differ): they are one
run, read once, the copy with raw rounds kept.
"""

from __future__ import annotations

import glob
from datetime import datetime
from pathlib import Path
from typing import Iterable, Sequence

from odperf.errors import ResultsError
from odperf.results import GLOB_CHARS, ForeignResults, SavedRun, load_run

SAME_RUN_WITHIN_S = 60.0  # the two writes of one run happen within the same pytest session's end


def _expand(raw: str | Path) -> list[Path]:
    """A path as given, or the matches of a glob pattern that names no existing path."""
    p = Path(raw)
    if p.exists() or not any(c in str(raw) for c in GLOB_CHARS):
        return [p]
    found = sorted(Path(m) for m in glob.glob(str(raw), recursive=True))
    if not found:
        raise ResultsError(f"{raw}: the pattern matched no file; check it (e.g. .benchmarks/*/*.json)")
    return found


def _folder_runs(folder: Path) -> list[SavedRun]:
    """odperf's runs in a folder tree; other suites' pytest-benchmark files are skipped, never odperf's."""
    found = sorted(folder.rglob("*.json"))
    if not found:
        raise ResultsError(f"{folder}: a folder with no JSON files (subfolders included); name saved runs "
                           f"or a --benchmark-storage folder")
    runs = []
    for f in found:
        try:
            runs.append(load_run(f))
        except ForeignResults:
            continue
        except ResultsError as exc:
            raise ResultsError(f"{exc} (found in {folder}: fix or remove it, or name the runs to read)") from exc
    if not runs:
        raise ResultsError(f"{folder}: no odperf results file in this folder ({len(found)} JSON files looked at)")
    return runs


def load_runs(paths: Sequence[str | Path]) -> list[SavedRun]:
    """Load files, storage folders and glob patterns. A file named outright must be odperf's; inside a
    folder, foreign pytest-benchmark files are skipped (a storage tree can hold other suites' saves)."""
    runs: list[SavedRun] = []
    for raw in paths:
        for p in _expand(raw):
            runs.extend(_folder_runs(p) if p.is_dir() else [load_run(p)])
    if not runs:
        raise ResultsError("no results given: name saved JSON files or a --benchmark-storage folder")
    return distinct_runs(runs)


def _when(run: SavedRun) -> datetime | None:
    try:
        return datetime.fromisoformat(run.datetime) if run.datetime else None
    except ValueError:
        return None


def same_run(a: SavedRun, b: SavedRun) -> bool:
    """Two files of one run: same machine, commit, benchmarks and records, written moments apart."""
    if a.fingerprint != b.fingerprint:
        return False
    ta, tb = _when(a), _when(b)
    if ta is None or tb is None:
        return a.datetime == b.datetime
    try:
        return abs((ta - tb).total_seconds()) <= SAME_RUN_WITHIN_S
    except TypeError:  # one with a timezone, one without
        return a.datetime == b.datetime


def distinct_runs(runs: Iterable[SavedRun]) -> list[SavedRun]:
    """Each run once, in the order first met; a run found in several files keeps the copy with raw rounds
    (else the first) and lists the others in ``also_saved_as``. The same file named twice counts once."""
    out: list[SavedRun] = []
    for run in runs:
        twin = next((r for r in out if r.path.resolve() == run.path.resolve() or same_run(r, run)), None)
        if twin is None:
            out.append(run)
            continue
        if twin.path.resolve() == run.path.resolve():
            continue
        keep, other = (run, twin) if run.has_raw_data and not twin.has_raw_data else (twin, run)
        keep.also_saved_as = [*twin.also_saved_as, *run.also_saved_as, other.path]
        out[out.index(twin)] = keep
    return out


def latest_named(runs: Iterable[SavedRun], name: str) -> list[SavedRun]:
    """Per device profile, the newest run saved under ``name``: ``NAME.json`` (--benchmark-json) or
    ``NNNN_NAME.json`` (--benchmark-save in a storage folder)."""
    newest: dict[str, SavedRun] = {}
    for run in runs:
        stems = [p.stem for p in (run.path, *run.also_saved_as)]
        if not any(stem == name or stem.endswith(f"_{name}") for stem in stems):
            continue
        cur = newest.get(run.profile)
        if cur is None or (run.datetime or "", run.path.name) > (cur.datetime or "", cur.path.name):
            newest[run.profile] = run
    if not newest:
        raise ResultsError(f"no saved run named {name!r} (files {name}.json or NNNN_{name}.json)")
    return [newest[p] for p in sorted(newest)]
