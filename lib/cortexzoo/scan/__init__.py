"""Zoo scans: orchestration of extraction, scoring and the result store."""
from .run import ScanConfig, ScanFailed, ScanResult, default_models, run_scan

__all__ = ["ScanConfig", "ScanFailed", "ScanResult", "default_models", "run_scan"]
