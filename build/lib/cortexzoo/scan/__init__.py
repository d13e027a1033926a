"""Zoo scans: orchestration of extraction, scoring and the result store.

:mod:`.config` (what a scan is asked), :mod:`.run` (the scan of many models),
:mod:`.model` (one model's units), :mod:`.plan` (actor sizing), :mod:`.scoring`
(a layer's scores against a dataset), :mod:`.planted` (recordings with a known truth).
"""
from .config import EMBEDDED, ScanConfig, default_models
from .run import ScanFailed, ScanResult, run_scan

__all__ = ["EMBEDDED", "ScanConfig", "ScanFailed", "ScanResult", "default_models", "run_scan"]
