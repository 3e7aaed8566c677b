"""Every input of `pytest benchmarks` is checked once, before any worker starts: one line naming the fault and
its fix, exit code 4, no traceback. Real pytest processes over the real suite (no worker ever starts here)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from suite_runs import ROOT, run_pytest

from odperf.datasets.synthetic import VAL_SPLIT, ensure_embedded

FIXTURE_MODEL = ROOT / "fixtures" / "models" / "centernet_tiny" / "saved_model"
# a fault's own option comes later and wins; a check that let a run through would measure one small case
RUN = ("benchmarks", "-p", "no:xdist", "--odperf-devices=cpu", "--odperf-images=1", "--odperf-batch-sizes=64",
       "--odperf-models=centernet_tiny")


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("places")
    a_file = root / "a_file"
    a_file.write_text("not a folder")
    (root / "empty").mkdir()
    truncated = root / "truncated" / "saved_model"
    truncated.mkdir(parents=True)
    (truncated / "saved_model.pb").write_bytes((FIXTURE_MODEL / "saved_model.pb").read_bytes()[:2000])
    for owner in ("m1", "m2", "a/model", "b/model"):  # the TF2 zoo's layout: <name>/saved_model/
        shutil.copytree(FIXTURE_MODEL, root / owner / "saved_model")
    damaged_datasets(root)
    (root / "typo.toml").write_text('[[rule]]\nmodels = ["group:lowest", "ssd", "embedded", "*"]\nmap_floor = 0.0\n'
                                    '[[rule]]\nmodels = ["centernet_tinyy"]\ndeadline_image_s = 0.001\n')
    return {"root": root, "file": a_file}


def damaged_datasets(root: Path) -> None:
    """Twelve images of the embedded validation split as COCO roots, each damaged in one way."""
    source = ensure_embedded(n_train=0)
    data = json.loads((source / "annotations" / f"instances_{VAL_SPLIT}.json").read_text())
    images = data["images"][:12]
    ids = {i["id"] for i in images}
    annotations = [a for a in data["annotations"] if a["image_id"] in ids]
    for name in ("images_missing", "images_truncated", "images_corrupt", "jpeg_truncated", "unannotated"):
        folder = root / name / VAL_SPLIT
        folder.mkdir(parents=True)
        kept = [dict(i) for i in images]
        for info in kept:
            shutil.copy(source / VAL_SPLIT / info["file_name"], folder / info["file_name"])
        if name == "jpeg_truncated":
            for info in kept:
                png = folder / info["file_name"]
                info["file_name"] = png.with_suffix(".jpg").name
                Image.open(png).convert("RGB").save(folder / info["file_name"], quality=90)
                png.unlink()
        sixth = folder / kept[5]["file_name"]
        if name == "images_missing":
            sixth.unlink()
        elif name in ("images_truncated", "jpeg_truncated"):
            sixth.write_bytes(sixth.read_bytes()[: sixth.stat().st_size // 2])
        elif name == "images_corrupt":
            sixth.write_text("not an image")
        (root / name / "annotations").mkdir()
        (root / name / "annotations" / f"instances_{VAL_SPLIT}.json").write_text(json.dumps(
            {**data, "images": kept, "annotations": [] if name == "unannotated" else annotations}))


FAULTS = [
    # (id, options, what the one line must say)
    ("batch_65", ["--odperf-batch-sizes=65"], "batch 65 would run as batch 64 again; use sizes from 1 to 64"),
    ("batch_text", ["--odperf-batch-sizes=big"], "expected comma-separated positive integers"),
    ("seed", ["--odperf-seed=-1"], "--odperf-seed=-1: the camera-image seed must be 0 or more"),
    ("timeout_zero", ["--odperf-timeout=0"], "--odperf-timeout=0: the limit per measured case must be a positive"),
    ("timeout_negative", ["--odperf-timeout=-5"], "--odperf-timeout=-5: the limit per measured case"),
    ("sample_period", ["--odperf-sample-ms=0"], "--odperf-sample-ms=0: the memory sampling period must be"),
    ("warmup", ["--odperf-warmup-images=0"], "--odperf-warmup-images=0: timing needs at least 1 warm-up image"),
    ("warmup_steady", ["--odperf-warmup-steady=5"], "--odperf-warmup-steady=5: give the fraction the last warm-up "
     "images must agree within, between 0 and 1"),
    ("warmup_steady_bound", ["--odperf-warmup-steady=0.05", "--odperf-warmup-images=31"],
     "--odperf-warmup-images=31 with --odperf-warmup-steady: a steady warm-up stops at 30 images"),
    ("images", ["--odperf-images=0"], "--odperf-images=0: time at least 1 camera image per case"),
    ("device", ["--odperf-devices=gpu"], "--odperf-devices: no device 'gpu' on this machine (found: cpu"),
    ("dataset_missing", ["--odperf-dataset={root}/nowhere"], "no such folder; give a COCO-format root"),
    ("dataset_empty", ["--odperf-dataset={root}/empty"], "instances_val2017.json is missing"),
    ("split", ["--odperf-split=train2017"], "the embedded dataset is timed on its validation split only"),
    ("image_missing", ["--odperf-dataset={root}/images_missing"],
     "--odperf-dataset={root}/images_missing: image {root}/images_missing/val2017/000001000006.png (id 1000006) "
     "is missing: the dataset's image folder is incomplete"),
    ("image_truncated", ["--odperf-dataset={root}/images_truncated"],
     "val2017/000001000006.png (id 1000006) cannot be read (image file is truncated"),
    ("image_jpeg_truncated", ["--odperf-dataset={root}/jpeg_truncated"],
     "val2017/000001000006.jpg (id 1000006) cannot be read (image file is truncated"),
    ("image_corrupt", ["--odperf-dataset={root}/images_corrupt"],
     "val2017/000001000006.png (id 1000006) cannot be read (cannot identify image file"),
    ("unannotated_accuracy", ["--odperf-dataset={root}/unannotated", "--odperf-accuracy"],
     "--odperf-accuracy: {root}/unannotated/annotations/instances_val2017.json holds no annotations (no object box "
     "in any of its 12 images), so there is no mAP to compute; give --odperf-dataset a split with annotations, or "
     "drop --odperf-accuracy"),
    ("model_missing", ["--odperf-models={root}/nowhere"], "no such model file or folder"),
    ("model_empty", ["--odperf-models={root}/empty"], "--odperf-models: empty: {root}/empty: holds no detector"),
    ("model_truncated", ["--odperf-models={root}/truncated"],
     "--odperf-models: truncated: {root}/truncated/saved_model/saved_model.pb is not a TensorFlow SavedModel"),
    ("model_names", ["--odperf-models={root}/a/model/saved_model,{root}/b/model"],
     "2 models would be named 'model' ({root}/a/model/saved_model, {root}/b/model) and one would hide the other"),
    ("model_dir", ["--odperf-model-dir={root}/nowhere"], "--odperf-model-dir={root}/nowhere: no such folder"),
    ("expectations", ["--odperf-expectations={root}/nowhere.toml"], "expectations file {root}/nowhere.toml does not exist"),
    ("expectations_model_typo", ["--odperf-expectations={root}/typo.toml"],
     "{root}/typo.toml, rule 2: models entry 'centernet_tinyy' names no model, meta-architecture, family or "
     "group:<mAP group> odperf knows; did you mean centernet_tiny, centernet?"),
    ("emulate_gpu_on_cpu", ["-k", "gpu", "--odperf-emulate=p100"],
     "emulating the GPU profile 'p100' needs a GPU to run on (this machine has no GPU"),
    ("emulate_real_name", ["--odperf-emulate=cpu:400"], "'cpu' is the real CPU's profile"),
    ("results_dir", ["--odperf-results-dir={file}/sub"], "--odperf-results-dir {file}/sub cannot be created"),
    ("json_folder_missing", ["--benchmark-json={root}/nowhere/run.json"],
     "--benchmark-json {root}/nowhere/run.json: its folder {root}/nowhere does not exist; create it"),
    ("json_folder_unwritable", ["--benchmark-json={file}/run.json"], "--benchmark-json {file}/run.json: its folder"),
    ("json_is_a_folder", ["--benchmark-json={root}"], "is a folder; give a file name"),
    ("stream_scenarios", ["--odperf-stream-scenarios=singlestream"],
     "--odperf-stream-scenarios: unknown scenario(s) singlestream; choose from single_stream, multi_stream"),
    ("stream_budget", ["--odperf-stream-budget=long"],
     "--odperf-stream-budget: stream budget must be one of quick, smoke, mlperf, got 'long'"),
    ("storage", ["--benchmark-save=x", "--benchmark-storage={file}/store"],
     "--benchmark-storage folder {file}/store cannot be created"),
]


@pytest.mark.parametrize(("options", "says"), [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS])
def test_a_bad_input_is_one_line_before_any_worker(places, options, says):
    fill = {"root": places["root"], "file": places["file"]}
    out = run_pytest(*RUN, *(o.format(**fill) for o in options))
    text = out.stdout + out.stderr
    assert out.returncode == 4, text
    errors = [line for line in text.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and errors[0].startswith("ERROR: odperf: "), text
    assert says.format(**fill) in errors[0]
    assert "Traceback" not in text and len(text.strip().splitlines()) <= 2, text


def test_an_unwritable_dataset_cache_is_refused_up_front(places):
    out = run_pytest(*RUN, "--odperf-models=centernet_tiny", "--odperf-batch-sizes=1",
                     env={"ODPERF_CACHE": str(places["file"] / "cache")})
    assert out.returncode == 4, out.stdout + out.stderr
    assert out.stderr.startswith("ERROR: odperf: $ODPERF_CACHE: cannot write the dataset cache")
    assert "set $ODPERF_CACHE to a writable folder" in out.stderr.splitlines()[0]


def test_name_path_names_exported_models(places):
    root = places["root"]
    out = run_pytest("benchmarks/test_inference.py", "--collect-only", "-q", "-p", "no:xdist",
                     f"--odperf-models={root}/m1/saved_model,{root}/m2,first={root}/a/model,{root}/b/model",
                     "--odperf-batch-sizes=8", "--odperf-devices=cpu")
    assert out.returncode == 0, out.stdout + out.stderr
    ids = [line.split("[", 1)[1].rstrip("]") for line in out.stdout.splitlines() if "::test_inference[" in line]
    assert ids == ["m1-b8-cpu", "m2-b8-cpu", "first-b8-cpu", "model-b8-cpu"]


@pytest.mark.parametrize("selector", ["all", "paper", "tf2", "embedded", "lowest", "medium", "high"])
def test_every_selection_collects_under_strict_markers(selector):
    out = run_pytest("benchmarks", "--collect-only", "-q", "-p", "no:xdist", f"--odperf-models={selector}")
    assert out.returncode == 0, out.stdout + out.stderr
    assert " collected" in out.stdout


def test_markers_come_from_the_plugin_not_the_ini_file(tmp_path):
    ini = tmp_path / "pytest.ini"
    ini.write_text("[pytest]\naddopts = --strict-markers\n")  # no markers listed at all
    out = run_pytest("-c", str(ini), "--rootdir", str(ROOT), "--noconftest", "-p", "odperf.pytest_plugin",
                     "benchmarks/test_inference.py", "--collect-only", "-q", "-p", "no:xdist", "--odperf-models=all",
                     "-m", "tf2 or (paper and map_lowest) or centernet")
    assert out.returncode == 0, out.stdout + out.stderr
    from odperf.zoo.registry import all_models

    wanted = {m.name for m in all_models() if m.family == "tf2" or m.meta_arch == "centernet"
              or (m.family == "paper" and m.map_group == "lowest")}
    collected = {line.split("[", 1)[1].split("-b", 1)[0] for line in out.stdout.splitlines() if "::test_" in line}
    assert collected == wanted


_FAKE_NVML = '''
import importlib.machinery, importlib.util, os, sys
sys.path.insert(0, {tests!r})
# The stand-in takes its exception classes from the real pynvml, which this module shadows: load it aside.
_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.machinery.PathFinder.find_spec("pynvml", [p for p in sys.path if os.path.abspath(p or ".") != _here])
_real = importlib.util.module_from_spec(_spec)
_self, sys.modules["pynvml"] = sys.modules["pynvml"], _real  # it defines its error classes on sys.modules[name]
_spec.loader.exec_module(_real)
from nvml_standin import FakeGpu, NvmlStandIn
sys.modules["pynvml"] = _self
_nvml = NvmlStandIn([FakeGpu("NVIDIA H100 80GB HBM3", 80 * 1024**3)])

def __getattr__(name):
    return getattr(_nvml, name)
'''


def test_an_emulated_gpu_is_filed_under_a_name_of_its_own(tmp_path):
    """On an H100 (NVML stand-in), --odperf-emulate=p100 runs as p100_on_h100, marked gpu, h100, emulated."""
    (tmp_path / "pynvml.py").write_text(_FAKE_NVML.format(tests=str(ROOT / "tests")))
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    common = ("benchmarks/test_inference.py", "--collect-only", "-p", "no:xdist", "--odperf-models=centernet_tiny",
              "--odperf-batch-sizes=64", "--odperf-emulate=p100")
    out = run_pytest(*common, "-m", "emulated and h100 and gpu", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "hardware profile p100_on_h100" in out.stdout and "emulating p100_on_h100" in out.stdout
    assert "test_inference[centernet_tiny-b64-gpu]" in out.stdout and "-cpu]" not in out.stdout
    out = run_pytest(*common, "-m", "p100", env=env)
    assert out.returncode == 5  # nothing is marked as a P100 that is not one


def test_the_steady_warm_ups_bound_in_the_help_is_the_one_the_worker_keeps():
    """The plugin states the bound without importing the engine (its import is on every pytest start)."""
    import inspect

    import odperf.pytest_plugin as plugin
    from odperf.engine.request import MAX_WARMUP_IMAGES, MeasureRequest

    assert f"for at most {MAX_WARMUP_IMAGES} warm-up images" in inspect.getsource(plugin)
    assert MeasureRequest(model="m", batch_size=1, images=1).max_warmup_images == MAX_WARMUP_IMAGES
