"""Errors a user can cause. Each message names the thing at fault and how to fix it."""

from __future__ import annotations


class OdperfError(Exception):
    """Base of every error odperf raises for bad input; the CLI prints it without a traceback."""


class WorkloadError(OdperfError, ValueError):
    """An image or grid that does not fit the camera geometry."""


class DatasetError(OdperfError):
    """A COCO-format dataset that is missing, incomplete or unreadable."""


class ModelError(OdperfError):
    """A model that is missing, corrupt, or whose signature is not a detector's."""


class FetchError(OdperfError):
    """A model download that failed or did not verify; nothing is left half-written."""


class ResultsError(OdperfError):
    """A saved results file that is missing, corrupt or not odperf's."""
