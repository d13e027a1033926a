"""The resource plan of a scan: how many model actors each pipeline gets."""
from __future__ import annotations

import math

from ..core.raysetup import init_ray
from .config import ScanConfig

__all__ = ["actors_per_model"]


def actors_per_model(cfg: ScanConfig, concurrent: int) -> int | None:
    """Model actors per pipeline when ``concurrent`` pipelines share a CPU-only cluster.

    Each pipeline sizes its actors from the whole cluster; side by side their actors
    could take every CPU and starve the decode tasks (0.25 CPU) that feed them. Pick
    the smallest actor count at least the single-pipeline default whose actors, as
    many as fit, always leave a decode task room."""
    if cfg.num_actors is not None or concurrent <= 1 or cfg.engine != "ray":
        return cfg.num_actors
    from ..features.pipeline import default_actor_plan

    ray = init_ray(cfg.address)
    res = ray.cluster_resources()
    if res.get("GPU", 0) > 0:
        return None  # GPU actors: the pipelines queue for GPUs, CPUs stay free for decoding
    cpus = float(res.get("CPU", 1))
    n0 = default_actor_plan(None)["n"]
    for n in range(n0, n0 + 4 * int(math.ceil(cpus)) + 8):
        per = default_actor_plan(n)["num_cpus"]
        most = min(concurrent * n, int(math.floor(cpus / per + 1e-9)))
        if cpus - most * per >= 0.25 - 1e-9:
            return n
    return n0
