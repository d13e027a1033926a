"""Ray start-up, one way for every entry point (CLI verbs, jobs, library calls).

:func:`setup_env` sets what must be set before Ray is imported (see
shared/ENVIRONMENT.md); :func:`init_ray` connects to a cluster or starts a private
local instance; :func:`worker_env` is what workers need to reach the same storage as
the driver.
"""
from __future__ import annotations

import os
import sys
import threading

__all__ = ["setup_env", "init_ray", "worker_env", "resolve_address", "remote_task"]

_LOCK = threading.Lock()

# GOOGLE_APPLICATION_CREDENTIALS is not forwarded: it names a file on this node only
# (GCP workers use their service account)
_FORWARDED_ENV = ("AWS_", "CORTEXZOO_", "HF_", "TORCH_HOME", "OMP_NUM_THREADS",
                  "STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "GCSFS_")


def setup_env() -> None:
    """Defaults that must be in the environment before Ray is imported: token auth off
    (Ray 2.60 turns it on and the ``ray`` CLI then fails), no usage stats, ports on
    loopback for a local instance, no Ray Data progress bars without a terminal."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):
        tty = False
    if not tty:
        os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")


def resolve_address(address: str | None = None) -> str:
    """``address``, else ``RAY_ADDRESS`` (``ray job submit`` sets it), else ``"local"``:
    a private instance rather than whatever cluster happens to run on the machine."""
    return address or os.environ.get("RAY_ADDRESS") or "local"


def init_ray(address: str | None = None, *, log_to_driver: bool = False):
    """Connect to ``address`` (see :func:`resolve_address`; ``auto`` joins the cluster
    running on this machine) unless Ray is already initialized (tests, a notebook);
    returns the ``ray`` module. Worker logs stay in Ray's log files unless
    ``log_to_driver``; failures surface through results and errors."""
    setup_env()
    import ray

    with _LOCK:  # threads of one driver (a scan's model threads) may all get here at once
        if not ray.is_initialized():
            where = resolve_address(address)
            kw = {"include_dashboard": False} if where == "local" else {}
            ray.init(address=where, log_to_driver=log_to_driver, **kw)
    return ray


def worker_env() -> dict[str, str]:
    """Variables the workers need to read the same storage and caches as the driver
    (a cluster started before they were set would not have them)."""
    return {k: v for k, v in os.environ.items() if k.startswith(_FORWARDED_ENV)}


def remote_task(fn, address: str | None = None, *, num_cpus: float = 1, gpus: float | None = None,
                max_retries: int = 2):
    """``(ray, task)``: ``fn`` as a Ray remote function on the cluster at ``address`` (see
    :func:`init_ray`), its workers given :func:`worker_env`. ``gpus``: GPUs per task;
    None: one where the cluster has any, else none."""
    ray = init_ray(address)
    if gpus is None:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
    env = worker_env()
    opts = {"runtime_env": {"env_vars": env}} if env else {}
    return ray, ray.remote(fn).options(num_cpus=num_cpus, num_gpus=gpus,
                                       max_retries=max_retries, **opts)
