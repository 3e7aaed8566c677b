"""Wall and CPU seconds per tile of a PyTorch detector at batch 1 and 8 in this process: the OpenMP wait
policy is whatever the environment set (run.sh runs it under each setting, idle and beside a busy process)."""
import json, sys, time
import numpy as np
from odperf.backends import get_backend
from odperf.zoo.loaders import load_detector
get_backend("torch").start("cpu", None)
model = sys.argv[1]
detector = load_detector(model)
rng = np.random.default_rng(0)
out = {}
for b, n in ((1, 24), (8, 4)):
    batch = rng.integers(0, 255, (b, 300, 300, 3), dtype=np.uint8)
    detector(batch); detector(batch)
    walls, cpus = [], []
    for _ in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        detector(batch)
        walls.append(time.perf_counter() - t0); cpus.append(time.process_time() - c0)
    out[b] = (float(np.median(walls)) / b, float(np.median(cpus)) / b)
print(json.dumps(out))
