"""The resource plan of a scan: how many model actors each pipeline gets."""
from __future__ import annotations

import math

from ..core.raysetup import init_ray
from .config import ScanConfig

__all__ = ["actors_per_model", "worker_plan", "describe_plan"]


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


def worker_plan(cfg: ScanConfig, concurrent: int, num_actors: int | None) -> dict:
    """Resources of the extraction actors and the scoring tasks when units are scored on
    the workers, with the reasons, for the log.

    With GPUs, each model actor takes half a GPU and each scoring task the other half,
    so that one model's scoring (the torch solver in float32 on the GPU) runs beside the
    next model's extraction on every GPU. Without GPUs, the actors keep the fractional
    CPUs of :func:`cortexzoo.features.pipeline.default_actor_plan` (decode tasks need
    room) and a scoring task takes one CPU where a node has one to spare beside an actor
    and a decode task, else a quarter: on small nodes scoring then shares the actors'
    cores rather than wait for the extraction to end."""
    from ..core.raysetup import worker_env
    from ..features.pipeline import default_actor_plan

    ray = init_ray(cfg.address)
    res = ray.cluster_resources()
    cpus, gpus = float(res.get("CPU", 1)), float(res.get("GPU", 0))
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    ext = default_actor_plan(num_actors)
    if gpus > 0:
        ext = dict(ext, num_gpus=0.5)
        scoring = {"num_cpus": 1, "num_gpus": 0.5}
        inflight = int(2 * gpus)
        why = ("GPUs: actors and scoring tasks take half a GPU each, so one model is scored "
               "while the next is extracted; the solver runs in torch float32 on the GPU")
    else:
        node_cpus = min((float(n["Resources"].get("CPU", 0)) for n in ray.nodes()
                         if n.get("Alive") and n["Resources"].get("CPU", 0) > 0), default=cpus)
        scoring = {"num_cpus": 1.0 if node_cpus - ext["num_cpus"] - 0.25 >= 1.0 else 0.25}
        # a task per two CPUs: the extraction keeps the rest busy, and few worker
        # processes (each pays its imports once) are started and reused
        inflight = max(1, int(cpus // 2))
        why = ("no GPU: actors take fractional CPUs (decode tasks need room), scoring tasks "
               f"{scoring['num_cpus']} CPU each, numpy float64")
    # after the last extraction, as many tasks as the resources hold
    tail = int(2 * gpus) if gpus > 0 else max(1, int(cpus / max(scoring["num_cpus"], 1.0)))
    return {"extraction": ext, "scoring": scoring, "env": worker_env(), "nodes": nodes,
            "cpus": cpus, "gpus": gpus, "why": why, "max_inflight": inflight,
            "tail_inflight": tail}


def describe_plan(plan: dict, concurrent: int) -> str:
    ext, sc = plan["extraction"], plan["scoring"]
    return (f"resource plan: {plan['nodes']} node(s), {plan['cpus']:g} CPU, {plan['gpus']:g} GPU; "
            f"extraction: {concurrent} model(s) at a time, up to {ext['n']} actor(s) each with "
            f"{ext['num_cpus']:g} CPU, {ext['num_gpus']:g} GPU, {ext['threads']} thread(s); "
            f"scoring: one task per (model, layer) with {sc.get('num_cpus', 0):g} CPU, "
            f"{sc.get('num_gpus', 0):g} GPU, up to {plan['max_inflight']} at a time while "
            f"extracting, {plan['tail_inflight']} after ({plan['why']})")
