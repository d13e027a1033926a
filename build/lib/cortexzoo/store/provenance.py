"""Provenance of a score: the code and package versions, the host, and run manifests
with secrets scrubbed."""
from __future__ import annotations

import datetime as _dt
import functools
import importlib.metadata
import os
import platform
import re
import socket
import subprocess
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

__all__ = ["code_version", "package_versions", "scrub_secrets", "build_manifest", "REDACTED",
           "json_default", "now_iso"]


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``cortexzoo.__version__`` plus the git short sha when available (cached).

    ``CORTEXZOO_CODE_VERSION`` in the environment overrides it, so a driver can
    hand its version to workers that run outside a git checkout.
    """
    env = os.environ.get("CORTEXZOO_CODE_VERSION")
    if env:
        return env
    from cortexzoo import __version__

    try:
        res = subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                             cwd=os.path.dirname(os.path.abspath(__file__)),
                             capture_output=True, text=True, timeout=2)
        sha = res.stdout.strip() if res.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+g{sha}" if re.fullmatch(r"[0-9a-f]{4,40}", sha) else __version__


_VERSIONED = ("torch", "torchvision", "timm", "ray", "numpy", "scikit-learn", "scipy",
              "pandas", "pyarrow", "fsspec", "s3fs")


def package_versions() -> dict[str, str | None]:
    """Versions of python and the packages a score depends on (None if absent)."""
    from cortexzoo import __version__

    out: dict[str, str | None] = {"python": platform.python_version(), "cortexzoo": __version__}
    for name in _VERSIONED:
        try:
            v: str | None = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            v = None
        out["sklearn" if name == "scikit-learn" else name] = v
    return out




# ------------------------------------------------------------------ manifests

_SECRET_KEY_RE = re.compile(
    r"(secret|passw(or)?d|token|key_?id|access_?key|credential|private_?key|api_?key|authorization)",
    re.IGNORECASE)
_URL_USERINFO_RE = re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-]*://)[^/@\s]+@")
# signed-URL query parameters (S3 SigV2/V4, GCS V2/V4, Azure SAS): whoever reads the
# manifest could use the URL until it expires
_SIGNED_PARAM_RE = re.compile(
    r"([?&](?:X-Amz-(?:Signature|Credential|Security-Token)|X-Goog-(?:Signature|Credential)|"
    r"Signature|AWSAccessKeyId|GoogleAccessId|sig|x-amz-security-token)=)[^&#\s\"']*",
    re.IGNORECASE)
REDACTED = "<redacted>"


def scrub_secrets(obj: Any) -> Any:
    """Return a copy of ``obj`` with secrets redacted.

    Values under keys matching secret/password/token/key_id/access_key/
    credentials/private_key/api_key/authorization (any case, ``-`` or ``_``)
    become ``"<redacted>"``, at any depth; ``user:pass@`` in URLs and the signature,
    credential and token parameters of signed URLs (``X-Amz-Signature=...``) are
    redacted too.
    """
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if isinstance(k, str) and _SECRET_KEY_RE.search(k.replace("-", "_")):
                out[k] = REDACTED
            else:
                out[k] = scrub_secrets(v)
        return out
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [scrub_secrets(v) for v in obj]
    if isinstance(obj, str):
        obj = _URL_USERINFO_RE.sub(lambda m: m.group(1) + REDACTED + "@", obj)
        return _SIGNED_PARAM_RE.sub(lambda m: m.group(1) + REDACTED, obj)
    return obj


def json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (_dt.datetime, _dt.date, pd.Timestamp)):
        return o.isoformat()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat()


def build_manifest(run_id: str, config: Mapping[str, Any], *,
                   dataset_fingerprint: str | None = None,
                   started_at: Any = None, ended_at: Any = None,
                   **extra: Any) -> dict[str, Any]:
    """A run manifest: config, package versions, host, code version and times.

    Secrets are scrubbed when it is written (:meth:`ResultStore.write_manifest`).
    """
    return {
        "run_id": run_id,
        "config": dict(config),
        "dataset_fingerprint": dataset_fingerprint,
        "versions": package_versions(),
        "code_version": code_version(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "started_at": started_at,
        "ended_at": ended_at,
        **extra,
    }


