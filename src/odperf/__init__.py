"""odperf: what it costs to run object detectors on a fast stream of high-definition camera images."""

__version__ = "0.1.0"
