"""``odperf ab``'s settings: its defaults and CI's self-gate, each in one place (the calibration judges both)."""

from __future__ import annotations

from odperf.report import gate as gt
from odperf.report import significance as sig

SLOT_TIMEOUT_S = 1800
DEPLOY_THRESHOLD = 0.25
SLOT_ALPHA = gt.DEFAULT_SLOT_ALPHA
# CI's self-gate (``--ci``), calibrated on a 2-core machine (reports/gate-calibration): centernet_tiny at batch
# 64 (one worker start per slot: 6 pairs cost what 4 pairs of batches 1 and 64 did); a slowdown must pass
# +15% and be significant at p < 0.05 over the 6 pairs; deployment and the model's own memory, one figure
# per slot and noisier, at p < 0.01; outcomes and mAP are gated exactly (accuracy, strict).
CI_SETTINGS = {"batch_sizes": "64", "time_threshold": 0.15, "alpha": 0.05, "slot_alpha": SLOT_ALPHA, "pairs": 6}
DEFAULT_SETTINGS = {"time_threshold": gt.DEFAULT_TIME_THRESHOLD, "alpha": sig.DEFAULT_ALPHA,
                    "slot_alpha": SLOT_ALPHA, "pairs": 4}  # odperf ab's own defaults
