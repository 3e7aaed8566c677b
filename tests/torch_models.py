"""Small real PyTorch detectors in each format the PyTorch backend reads, written by the tests themselves.

PyTorch and TensorFlow loaded in one process can crash it, and the test processes load TensorFlow: so the
models are written by a fresh Python (``torch_model_writer.py``), as ``engine_models`` does for
TensorFlow's, and the tests run them in workers or subprocesses. The tiny detector answers one detection
per image at a known place (x 0.1-0.5, y 0.2-0.6 of the image, class 3), its score computed by a real
convolution of the image.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from odperf.suite.launch import child_env

BOX_XYXY = (0.1, 0.2, 0.5, 0.6)
LABEL = 3
ARTIFACTS = {
    "script": "tiny/tiny.pt",  # TorchScript
    "export": "tiny_export/tiny.pt2",  # torch.export on a list of one image: declared batch 1
    "state_dict": "fcos_sd",  # a torchvision architecture's state_dict + odperf_model.json
    "bare": "bare/bare.pth",  # a state_dict alone: no architecture
}
HAVE_TORCH = importlib.util.find_spec("torch") is not None
WRITER = Path(__file__).with_name("torch_model_writer.py")


def build(out_dir: Path) -> dict[str, Path]:
    """Write every artifact of ``ARTIFACTS`` under ``out_dir`` in one fresh Python; returns their paths."""
    done = subprocess.run([sys.executable, str(WRITER), str(out_dir)], env=child_env(), capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"writing the torch test models failed: {done.stderr[-2000:]}")
    return {key: out_dir / rel for key, rel in ARTIFACTS.items()}


def run_python(code: str, timeout: float = 600) -> dict:
    """Run ``code`` in a fresh Python; it prints one JSON object last, which is returned."""
    done = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"child failed ({done.returncode}): {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
