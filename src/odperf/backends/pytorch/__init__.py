"""The PyTorch runtime: torchvision detectors and exported PyTorch models, on the CPU or an NVIDIA GPU.

Formats (``find_artifact``), each usable by path like an exported TensorFlow detector:
- ``torchscript``: a ``torch.jit.save`` file (.pt, .ts, .torchscript) of a torchvision-style detector;
- ``torch_export``: a ``torch.export.save`` program (.pt2) taking, like torchvision's detectors, a list of
  float CHW images in [0, 1] (an export fixes the list's length: that length is its declared batch, so a
  program exported on one image runs tile by tile) or one float [B, 3, H, W] tensor;
- ``torch_state_dict``: a folder with ``odperf_model.json`` (``"backend": "torch"``, ``"architecture"``,
  optional ``"kwargs"`` for its builder, ``"weights"``: a state_dict file, optional ``"label_map"``: the
  category id of each label the model outputs), as odperf's embedded PyTorch detectors ship;
- ``architecture``: a registry entry naming a torchvision builder (``odperf.zoo.torchvision_catalog``),
  built with random weights unless a weights file sits in the model folder.

On a GPU the worker sees one card (CUDA_VISIBLE_DEVICES), the caching allocator can be capped to emulate
a smaller card (``set_per_process_memory_fraction``), and an image's time ends when its detections are
numpy arrays on the host, which waits for the GPU.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

from odperf.backends.base import Loaded, RuntimeInfo, cap_host_memory
from odperf.errors import ModelError, OdperfError

MODEL_FILE = "odperf_model.json"
SCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript")
EXPORT_SUFFIX = ".pt2"
WEIGHTS_NAMES = ("weights.pth", "weights.pt")
CUDNN_BENCHMARK_ENV = "ODPERF_CUDNN_BENCHMARK"  # "1": cuDNN autotuning on in the worker (default off)
CUDA_ENV = ("CUDA_MODULE_LOADING", "PYTORCH_CUDA_ALLOC_CONF", "OMP_NUM_THREADS")


def cuda_environment() -> dict[str, Any]:
    """What shapes a GPU worker besides its code, for ``runtime_settings``: how CUDA loads its modules,
    the caching allocator's configuration and the thread setting (the cores it may run on are in
    ``portable_torch.runtime_settings``, on every device)."""
    return {name.lower(): os.environ.get(name) for name in CUDA_ENV}


class TorchBackend:
    name = "torch"
    distribution = "torch"
    formats = ("torchscript", "torch_export", "torch_state_dict", "architecture")
    expects = f"a TorchScript .pt, a torch.export .pt2, or a folder whose {MODEL_FILE} names a torch architecture"
    oom_pattern = re.compile(r"OutOfMemoryError|CUDA out of memory|can't allocate memory|"
                             r"CUBLAS_STATUS_ALLOC_FAILED|CUDNN_STATUS_ALLOC_FAILED")
    capped_oom_pattern = re.compile(r"$^")  # nothing beyond the patterns above
    gpu_cap_how = "torch_cuda_memory_fraction"

    def __init__(self) -> None:
        self.device: Any = None

    # --- files (parent and worker; no torch import) ---------------------------------------------
    def find_artifact(self, path: Path) -> tuple[str, Path] | None:
        if path.is_dir():
            meta = _read_meta(path)
            if meta is not None and meta.get("backend") == self.name:
                return "torch_state_dict", path
            for child in sorted(path.iterdir()):
                if child.suffix == EXPORT_SUFFIX:
                    return "torch_export", child
            return None
        if path.suffix == EXPORT_SUFFIX:
            return "torch_export", path
        if path.suffix in SCRIPT_SUFFIXES:
            return ("torchscript" if _is_torchscript(path) else "state_dict"), path
        return None

    def check(self, fmt: str, artifact: Path, deep: bool = True) -> str:
        if fmt == "state_dict":
            raise ModelError(
                f"{artifact}: a bare state_dict names no architecture. Put it in a folder with {MODEL_FILE} "
                '({"backend": "torch", "architecture": "fasterrcnn_resnet50_fpn_v2", "weights": '
                f'"{artifact.name}"}}), or save the model with torch.jit.save / torch.export.save'
            )
        if fmt == "torch_state_dict":
            meta = _read_meta(artifact) or {}
            if not meta.get("architecture"):
                raise ModelError(f"{artifact / MODEL_FILE}: names no \"architecture\" (a torchvision builder "
                                 "such as fasterrcnn_resnet50_fpn_v2, or an embedded odperf architecture)")
            weights = artifact / str(meta.get("weights", WEIGHTS_NAMES[0]))
            if not weights.is_file() or weights.stat().st_size == 0:
                raise ModelError(f"{artifact}: weights file {weights.name} is missing or empty "
                                 f"(named by {MODEL_FILE}'s \"weights\")")
        elif fmt in ("torchscript", "torch_export") and artifact.stat().st_size == 0:
            raise ModelError(f"{artifact} is empty (interrupted copy?)")
        return fmt

    # --- the worker ---------------------------------------------------------------------------------
    def start(self, device: str, memory_limit_mb: int | None) -> RuntimeInfo:
        from odperf.backends.pytorch.triton_guard import keep_triton_out

        keep_triton_out()
        import torch

        torch.set_grad_enabled(False)
        cap: dict[str, Any] | None = None
        from odperf.engine.portable_torch import runtime_settings

        settings: dict[str, Any] = runtime_settings()
        if device == "cpu":
            self.device = torch.device("cpu")
            names = ["cpu"]
        else:
            if not torch.cuda.is_available():
                raise OdperfError(
                    f"device {device}: PyTorch sees no GPU here (CUDA_VISIBLE_DEVICES="
                    f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}, torch {torch.__version__}, CUDA build "
                    f"{torch.version.cuda}); install a CUDA build of torch or measure on cpu"
                )
            self.device = torch.device("cuda", 0)  # the worker sees only its own GPU
            # Off: autotuning would time its own search in early images. On only where asked (the spread
            # study's variant, odperf.commands.spread), and then recorded.
            tuned = os.environ.get(CUDNN_BENCHMARK_ENV) == "1"
            torch.backends.cudnn.benchmark = tuned
            settings.update(cudnn_benchmark=tuned, tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
                            cuda=torch.version.cuda, **cuda_environment())
            names = [torch.cuda.get_device_name(0)]
            if memory_limit_mb is not None:
                cap = gpu_memory_cap(memory_limit_mb, torch.cuda.get_device_properties(0).total_memory)
                torch.cuda.set_per_process_memory_fraction(cap["fraction"], 0)
        _ = (torch.ones(1, device=self.device) + 1).cpu()  # brings up the runtime (and the CUDA context)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        if device == "cpu" and memory_limit_mb is not None:
            cap = cap_host_memory(memory_limit_mb)
        return RuntimeInfo(backend=self.name, version=torch.__version__, devices=names, memory_cap=cap,
                           settings=settings)

    def load(self, fmt: str, artifact: Path, spec: Any | None) -> Loaded:
        from odperf.backends.pytorch.triton_guard import keep_triton_out

        keep_triton_out()
        import torch

        self.check(fmt, artifact)
        if self.device is None:  # loaded outside a worker (``odperf zoo info --load``, tests): the CPU
            self.device = torch.device("cpu")
        untrained, declared, stacked, label_map, meta = False, None, False, None, {}
        try:
            if fmt == "torchscript":
                model = torch.jit.load(str(artifact), map_location=self.device)
            elif fmt == "torch_export":
                program = torch.export.load(str(artifact))
                declared, stacked = _export_input(program)
                model = program.module()
            elif fmt == "torch_state_dict":
                model, meta = load_folder(artifact, self.device)
                label_map = meta.get("label_map")
            elif fmt == "architecture":
                model = build(spec.architecture, {})
                weights = weights_file(artifact)
                untrained = weights is None
                if weights is not None:
                    _load_weights(model, weights)
            else:
                raise ModelError(f"{artifact}: format {fmt!r} is not one PyTorch reads")
        except (RuntimeError, OSError, ValueError, zipfile.BadZipFile, KeyError) as exc:
            raise ModelError(f"{artifact}: does not load as {fmt} under torch {torch.__version__} "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
        if fmt != "torch_export":  # an exported program is frozen in eval mode on its export device
            model = model.eval().to(self.device)
        from odperf.backends.pytorch.convert import make_run
        from odperf.engine.portable_torch import detection_slots

        run = make_run(model, self.device, detection_slots(meta, model), label_map=label_map, stacked=stacked)
        return Loaded(run=run, format=fmt, source=artifact, declared_batch=declared, untrained=untrained,
                      device_clock=run.device_clock)  # type: ignore[attr-defined]

    def weights_for(self, folder: Path) -> Path | None:
        return weights_file(folder)

    def allocator_stats(self) -> dict[str, float] | None:
        import torch

        if self.device is None or self.device.type != "cuda":
            return None
        return {
            "current_mb": torch.cuda.memory_allocated(0) / 1e6,
            "peak_mb": torch.cuda.max_memory_allocated(0) / 1e6,
            "reserved_peak_mb": torch.cuda.max_memory_reserved(0) / 1e6,
        }


def gpu_memory_cap(memory_limit_mb: int, total_bytes: int) -> dict[str, Any]:
    """The caching allocator's per-process fraction that emulates a card of ``memory_limit_mb`` MB on one
    of ``total_bytes``; a card at least as large as the real one cannot be emulated by a cap."""
    limit = memory_limit_mb * 1_000_000
    if limit >= total_bytes:
        raise OdperfError(f"cannot emulate {memory_limit_mb} MB on a GPU of {total_bytes / 1e6:.0f} MB: "
                          "an emulated card must be smaller than the real one")
    return {"how": TorchBackend.gpu_cap_how, "fraction": limit / total_bytes, "limit_mb": limit / 1e6,
            "device_total_mb": total_bytes / 1e6}


def build(architecture: str, kwargs: dict[str, Any]) -> Any:
    """A detector by architecture name: odperf's embedded PyTorch architectures, else torchvision's."""
    from torchvision.models import detection

    from odperf.backends.pytorch.architectures import BUILDERS

    if architecture in BUILDERS:
        return BUILDERS[architecture](**kwargs)
    builder = getattr(detection, architecture, None)
    if builder is None or not callable(builder) or architecture.startswith("_"):
        raise ModelError(f"unknown PyTorch detection architecture {architecture!r}: not an embedded one "
                         f"({', '.join(BUILDERS)}) nor a torchvision.models.detection builder")
    from odperf.backends.pytorch.labels import COCO_CLASSES

    return builder(**{"weights": None, "weights_backbone": None, "num_classes": COCO_CLASSES, **kwargs})


def load_folder(folder: Path, device: Any = "cpu") -> tuple[Any, dict[str, Any]]:
    """The model a folder describes (``odperf_model.json`` + state_dict), in eval mode, and its metadata."""
    meta = _read_meta(folder)
    if meta is None or not meta.get("architecture"):
        raise ModelError(f"{folder / MODEL_FILE}: missing, unreadable or names no \"architecture\"")
    model = build(str(meta["architecture"]), meta.get("kwargs") or {})
    _load_weights(model, folder / str(meta.get("weights", WEIGHTS_NAMES[0])))
    return model.to(device).eval(), meta


def weights_file(folder: Path) -> Path | None:
    """A user's weights for a registry architecture: ``<folder>/weights.pth`` or ``<folder>.pth``."""
    for candidate in (*(folder / n for n in WEIGHTS_NAMES), folder.with_suffix(".pth")):
        if candidate.is_file():
            return candidate
    return None


def read_state_dict(path: Path) -> dict[str, Any]:
    """A weights file's state_dict, on the CPU (a training checkpoint's ``model`` entry where it is one)."""
    import torch

    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # a training checkpoint (torchvision's references save {"model": ...})
    return state


def _load_weights(model: Any, path: Path) -> None:
    state = read_state_dict(path)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes that differ: another width or number of classes
        raise ModelError(f"{path}: the state_dict does not fit the architecture "
                         f"({str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else exc})") from None
    if missing or unexpected:
        raise ModelError(f"{path}: the state_dict does not fit the architecture ({len(missing)} missing, "
                         f"{len(unexpected)} unexpected keys, e.g. {(missing or unexpected)[0]})")


def _export_input(program: Any) -> tuple[int | None, bool]:
    """(declared batch, takes one stacked tensor) of an exported program, from its input tree."""
    try:
        first = program.call_spec.in_spec.children_specs[0].children_specs[0]
    except (AttributeError, IndexError):
        return None, False
    if first.type in (list, tuple):
        return first.num_children, False
    return None, True


def _read_meta(folder: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((folder / MODEL_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return meta if isinstance(meta, dict) else None


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive holds code/ (a plain torch.save state_dict holds data.pkl only)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in n or n.startswith("code/") for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


BACKEND = TorchBackend()
