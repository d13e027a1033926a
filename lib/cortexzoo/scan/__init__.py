"""Zoo scans: orchestration of extraction, scoring and the result store.

:mod:`.config` (what a scan is asked), :mod:`.run` (the scan of many models),
:mod:`.model` (one model's units), :mod:`.plan` (the resource plan), :mod:`.workers`
(scoring tasks on the workers), :mod:`.scoring` (a layer's scores against a dataset),
:mod:`.planted` (recordings with a known truth). Names are imported lazily, so that a
scoring task (which needs :mod:`.workers` only) does not import the model zoo and torch.
"""
from __future__ import annotations

from ..core.lazy import lazy_exports


_EXPORTS = {"EMBEDDED": "config", "ScanConfig": "config", "default_models": "config",
            "ScanFailed": "run", "ScanResult": "run", "run_scan": "run"}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
