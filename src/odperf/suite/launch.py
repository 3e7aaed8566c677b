"""The one launcher of the suite as a child pytest: its command line and its environment.

``odperf bench`` (each pass), ``odperf ab`` (each slot of each side), a scale-out shard on its node and the
GPU check all run the shipped benchmarks the same way, so a figure never depends on which of them asked.
Everything comes in as explicit arguments (no argparse Namespace): a caller says what it runs, this module
says how pytest is told.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from odperf.util.package_data import benchmarks_dir

INFERENCE = "test_inference.py"  # the timing (and accuracy) benchmarks
STREAMS = "test_stream.py"  # the LoadGen streams
PLUGIN = "odperf.pytest_plugin"
MAIN_IMAGES = 10  # camera images per case of the main job (and of a cluster run), unless told otherwise
EMULATED = "cpu_400mb:400"  # the main job's emulated small device: 400 MB above the runtime


@dataclass(frozen=True)
class SuiteRun:
    """One pytest run of the suite: its saved name, batch sizes, extra pytest options and benchmark file."""

    name: str
    batch_sizes: str
    options: tuple[str, ...] = ()
    file: str = INFERENCE
    images: int | None = None  # a fixed count of images per case for this run (None: the selection's)
    accuracy: bool = True  # scored with --odperf-accuracy when the selection scores
    models: str | None = None  # this run's own model selectors (None: the selection's)


@dataclass(frozen=True)
class Selection:
    """What every run of a job measures: models, devices, camera images per case, and whether (and with
    which scorer) the timed images are scored; ``pytest_args`` go on to pytest as given."""

    models: str
    devices: str
    images: int | None  # a fixed count per case; None: chosen by the run up to ``max_images`` (default: a car)
    accuracy: bool = False
    scorer: str | None = None
    pytest_args: tuple[str, ...] = ()
    max_images: int | None = None  # the ceiling of a run that chooses its images (odperf.measure.sampling)


def pytest_command(run: SuiteRun, selection: Selection, json_path: Path, *, save: bool = False,
                   root: Path | None = None, python: str = sys.executable,
                   plugins: Sequence[str] = ()) -> list[str]:
    """pytest over the shipped suite (the files ``pytest --pyargs odperf.benchmarks`` runs) or over the
    suite of the source tree ``root`` (``odperf ab``'s git ref) with ``python``; the plugin is named so that a
    source tree on PYTHONPATH runs the same way. ``save``: also keep a copy in pytest-benchmark's storage
    folder (--benchmark-save=NAME). ``plugins``: more pytest plugins to load (``-p``)."""
    suite = root / "benchmarks" if root is not None else benchmarks_dir()
    cmd = [
        python, "-m", "pytest", str(suite / run.file),
        "-p", PLUGIN, "-p", "no:xdist", "-p", "no:cacheprovider",
        f"--odperf-models={run.models or selection.models}",
        f"--odperf-devices={selection.devices}",
        *_image_count(run, selection),
        f"--odperf-batch-sizes={run.batch_sizes}",
        f"--benchmark-json={json_path}",
        "--benchmark-columns=mean,median,max,rounds",
        "--benchmark-sort=name",
        "--benchmark-disable-gc",  # the worker times with GC off too: neither clock counts a collection
        *run.options,
    ]
    for plugin in plugins:
        cmd += ["-p", plugin]
    if save:
        cmd.append(f"--benchmark-save={run.name}")
    if selection.accuracy and run.accuracy and run.file == INFERENCE:
        cmd.append("--odperf-accuracy")
        if selection.scorer:
            cmd.append(f"--odperf-scorer={selection.scorer}")
    return cmd + [a for a in selection.pytest_args if a != "--"]


def _image_count(run: SuiteRun, selection: Selection) -> list[str]:
    images = run.images or selection.images
    if images:
        return [f"--odperf-images={images}"]
    return [f"--odperf-max-images={selection.max_images}"] if selection.max_images else []


def child_env(environ: Mapping[str, str] | None = None, *, source: Path | None = None,
              drop: Sequence[str] = ()) -> dict[str, str]:
    """The environment of a child pytest run: without what a pytest-xdist worker hands down (PYTEST_XDIST_*,
    with which pytest-benchmark switches itself off and odperf refuses timing) and without ``drop`` (say,
    the OMP_NUM_THREADS Ray sets); ``source``: a source tree whose ``src`` goes first on PYTHONPATH, so the
    child runs that tree's odperf rather than the installed one."""
    env = {k: v for k, v in (os.environ if environ is None else environ).items()
           if not k.startswith("PYTEST_XDIST_") and k != "PYTEST_CURRENT_TEST" and k not in drop}
    if source is not None:
        rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join([str(source / "src"), *rest])
    return env
