"""The measurement engine: one fresh worker process per measured (model, device, batch size).

``measure(request)`` runs a whole measurement; ``WorkerSession`` lets a harness (the pytest plugin) drive
the timed rounds itself. See ``client`` (parent side) and ``worker`` (the process that times).
"""

from odperf.engine.client import WorkerFailed, WorkerSession, measure
from odperf.engine.measurement import Deployment, Measurement
from odperf.engine.request import MeasureRequest

__all__ = ["MeasureRequest", "WorkerSession", "WorkerFailed", "Measurement", "Deployment", "measure"]
