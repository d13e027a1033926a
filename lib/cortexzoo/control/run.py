"""``cortexzoo control accentuate`` and ``controversial``: sweeps per (site, seed image) as
Ray tasks (or in this process), resumable per sweep, into a folder a lab can show.

A work unit is one (kind, site, seed). Its key hashes what its images depend on: the
encoder(s) (their weights' digests), the site, the seed's pixels on the canvas, the
levels and the synthesis settings; it is done when ``control/sweeps/<key>.parquet``
exists under the output folder (written after the unit's PNGs), so a rerun makes only
the missing sweeps. Each task loads the network once per worker process (kept for the
next task) and runs on a GPU when the cluster has one. At the end the driver gathers
every sweep in the folder (of this run and earlier ones) into the folder's
``stimuli.parquet``, the tables and the contact sheets (:mod:`.outputs`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..core.cache_key import canonical_json, safe_key
from ..core.config import config_from_mapping, read_yaml_mapping
from ..core.uri import normalize_uri
from ..scan.encoders import Encoder, EncoderError, load_encoder
from .outputs import SWEEPS
from .seeds import Seed, read_seeds
from .synth import SynthConfig, levels

__all__ = ["ControlConfig", "ControlResult", "run_control", "run_unit"]

log = logging.getLogger("cortexzoo")

KINDS = ("accentuate", "controversial")


@dataclass
class ControlConfig:
    """A control run (every flag of ``cortexzoo control accentuate|controversial``)."""

    kind: str = "accentuate"
    encoder: str | None = None        # accentuate
    a: str | None = None              # controversial: encoder A and B
    b: str | None = None
    sites: list[str] | None = None    # None: the `top_sites` best predicted sites
    top_sites: int = 5
    seeds: Any = None                 # dataset folder, image folder, or image files/URIs
    seed_ids: list[str] | None = None
    n_seeds: int | None = None
    out: str = "cortexzoo-control"
    n_levels: int = 5                 # levels on each side of the seed: 2 n + 1 images
    step_sd: float = 0.2              # level spacing, in SDs of the site's responses
    delta_sd: float = 1.0             # controversial: A up and B down by this many SDs
    synth: SynthConfig = field(default_factory=SynthConfig)
    engine: str = "ray"               # "ray" or "local"
    address: str | None = None
    device: str | None = None         # None: cuda when torch sees one
    plot: bool = True
    progress: bool = True

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.engine not in ("ray", "local"):
            raise ValueError(f"engine must be 'ray' or 'local', got {self.engine!r}")
        if isinstance(self.synth, dict):
            self.synth = config_from_mapping(SynthConfig, self.synth, what="synth key(s)")
        if isinstance(self.sites, str):
            self.sites = [s.strip() for s in self.sites.split(",") if s.strip()]
        if self.kind == "accentuate" and not self.encoder:
            raise ValueError("accentuate needs an encoder (--encoder URI)")
        if self.kind == "controversial" and not (self.a and self.b):
            raise ValueError("controversial needs two encoders (--a URI_A --b URI_B)")
        for k in ("top_sites", "n_levels"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < (1 if k == "top_sites" else 0):
                raise ValueError(f"{k} must be a non-negative integer, got {v!r}")
        if self.n_seeds is not None and self.n_seeds < 1:
            raise ValueError(f"n_seeds must be >= 1, got {self.n_seeds!r}")
        if not float(self.step_sd) > 0 or not float(self.delta_sd) > 0:
            raise ValueError("step_sd and delta_sd must be > 0")
        self.out = normalize_uri(self.out)

    @classmethod
    def from_dict(cls, d: dict, where: str | None = None) -> "ControlConfig":
        return config_from_mapping(cls, d, what="control config key(s)", where=where)

    @classmethod
    def from_yaml(cls, path: str) -> "ControlConfig":
        return cls.from_dict(read_yaml_mapping(path, what="control config"), where=path)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class ControlResult:
    out: str
    written: int                   # sweeps made now
    skipped: int                   # sweeps already in the folder
    stimuli: pd.DataFrame          # every image of the folder (its stimuli.parquet)
    sweeps: pd.DataFrame           # one row per sweep of this run: how well it hit its levels
    plots: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


# ------------------------------------------------------------------ one unit
_MODELS: dict[tuple, Any] = {}


def _site_models(job: dict) -> list:
    """The SiteModel(s) of ``job``, kept per worker process for the next task."""
    from .site_model import SiteModel, load_for_encoder, pick_device, reg_layer_for

    device = pick_device(job.get("device"))
    key = (tuple(job["encoders"]), tuple(job["sites"]), job["synth"].get("reg_layer"), device)
    if key not in _MODELS:
        _MODELS.clear()  # one run's models at a time
        models = []
        for uri in job["encoders"]:
            enc = load_encoder(uri)
            loaded = load_for_encoder(enc, device)
            reg = reg_layer_for(loaded, enc.layer, job["synth"].get("reg_layer"))
            models.append(SiteModel(enc, job["sites"], reg_layers=[reg], device=device, model=loaded))
        _MODELS[key] = models
    return _MODELS[key]


def run_unit(job: dict) -> dict:
    """Make one sweep and write it (PNGs, then its record); returns a summary row."""
    import torch

    from ..data.images import encode_image
    from ..store import ResultStore, code_version
    from .synth import accentuate, controversial

    t0 = time.time()
    torch.manual_seed(0)
    models = _site_models(job)
    cfg = SynthConfig(**job["synth"])
    seed: Seed = job["seed"]
    store = ResultStore(job["out"])
    site, kind, key = job["site"], job["kind"], job["sweep_key"]
    base = dict(kind=kind, sweep_key=key, site=site, seed_id=seed.seed_id, seed_image=seed.uri,
                steps=cfg.steps, reg_weight=cfg.reg_weight, code_version=code_version())
    if kind == "accentuate":
        m = models[0]
        res = accentuate(m, site, seed.pixels, job["offsets"], cfg)
        n_side = (len(job["offsets"]) - 1) // 2
        rows = [dict(base, level=int(i - n_side), condition=f"L{i - n_side:+d}",
                     offset_sd=float(res["offset_sd"][i]), target=float(res["target"][i]),
                     predicted=float(res["achieved"][i]),
                     error_sd=float((res["achieved"][i] - res["target"][i]) / res["sd"]),
                     seed_prediction=res["seed_prediction"], response_sd=res["sd"],
                     distance_pixels=float(res["distance_pixels"][i]),
                     distance_layer=float(res["distance_layer"][i]), reg_layer=res["reg_layer"],
                     encoder=m.encoder.uri, model=m.encoder.spec, layer=m.layer,
                     region=m.encoder.meta["region"])
                for i in range(len(job["offsets"]))]
    else:
        ma, mb = models
        res = controversial(ma, mb, site, seed.pixels, job["delta_sd"], cfg)
        rows = [dict(base, level=(1 if c == "a_high" else -1), condition=c,
                     offset_sd=float(job["delta_sd"] if c == "a_high" else -job["delta_sd"]),
                     target=float(res["target_a"][i]), predicted=float(res["pred_a"][i]),
                     seed_prediction=res["seed_a"], response_sd=res["sd_a"],
                     pred_a=float(res["pred_a"][i]), pred_b=float(res["pred_b"][i]),
                     target_a=float(res["target_a"][i]), target_b=float(res["target_b"][i]),
                     z_a=float(res["z_a"][i]), z_b=float(res["z_b"][i]),
                     seed_a=res["seed_a"], seed_b=res["seed_b"],
                     distance_pixels=float(res["distance_pixels"][i]),
                     encoder=ma.encoder.uri, encoder_b=mb.encoder.uri,
                     model=ma.encoder.spec, layer=ma.layer, model_b=mb.encoder.spec,
                     layer_b=mb.layer, region=ma.encoder.meta["region"])
                for i, c in enumerate(res["condition"])]
    for row, img in zip(rows, res["images"]):
        rel = f"images/{kind}/{key}/{row['condition']}.png"
        store.put_bytes(rel, encode_image(img))
        row.update(image=rel, stimulus_id=f"{key}-{row['condition']}")
    table = pd.DataFrame(rows)
    import io

    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    store.put_bytes(f"{SWEEPS}/{key}.parquet", buf.getvalue())
    return {"sweep_key": key, "kind": kind, "site": site, "seed_id": seed.seed_id,
            "seconds": time.time() - t0}


# ------------------------------------------------------------------ the run
def _encoders(cfg: ControlConfig) -> list[Encoder]:
    uris = [cfg.encoder] if cfg.kind == "accentuate" else [cfg.a, cfg.b]
    encs = [load_encoder(u) for u in uris]
    if len(encs) == 2:
        from .seeds import canvas_geometry

        ga, gb = (canvas_geometry(e.meta["preprocessing"]) for e in encs)
        if ga["input_size"] != gb["input_size"]:
            raise EncoderError(f"encoders A ({encs[0].spec}) and B ({encs[1].spec}) present "
                               f"stimuli on canvases of {ga['input_size']} and "
                               f"{gb['input_size']} pixels; controversial images need one "
                               "(scan both with the same --input-size and --stimulus)")
    return encs


def _sites(cfg: ControlConfig, encs: list[Encoder]) -> list[str]:
    if cfg.sites:
        for e in encs:
            e.site_index(cfg.sites)   # names every unknown site
        return list(dict.fromkeys(cfg.sites))
    common = [s for s in encs[0].sites if all(s in e.sites for e in encs[1:])]
    if not common:
        raise EncoderError("the encoders share no site")
    r = np.mean([[e.site_stat("r")[e.sites.index(s)] for s in common] for e in encs], axis=0)
    order = np.argsort(-np.nan_to_num(r, nan=-np.inf), kind="stable")
    return [common[i] for i in order[:cfg.top_sites]]


def _jobs(cfg: ControlConfig, encs: list[Encoder], sites: list[str], seeds: list[Seed]) -> list[dict]:
    offsets = levels(cfg.n_levels, cfg.step_sd).tolist()
    synth = cfg.synth.to_dict()
    what = {"kind": cfg.kind, "encoders": [e.meta["weights_sha256"] for e in encs],
            "synth": synth, "offsets": offsets if cfg.kind == "accentuate" else cfg.delta_sd}
    jobs = []
    for site in sites:
        for seed in seeds:
            digest = canonical_json(dict(what, site=site, seed=seed.digest))
            key = safe_key(cfg.kind[:3], site, seed.seed_id,
                           hashlib.sha256(digest.encode()).hexdigest()[:8])
            jobs.append({"kind": cfg.kind, "out": cfg.out, "encoders": [e.uri for e in encs],
                         "sites": sites, "site": site, "seed": seed, "offsets": offsets,
                         "delta_sd": cfg.delta_sd, "synth": synth, "device": cfg.device,
                         "sweep_key": key})
    return jobs


def _execute(cfg: ControlConfig, todo: list[dict]) -> list[dict]:
    from ..core.progress import Progress

    out: list[dict] = []
    with Progress(len(todo), f"{cfg.kind} sweeps", unit="sweep", enabled=cfg.progress) as bar:
        if cfg.engine == "local" or not todo:
            for job in todo:
                out.append(run_unit(job))
                bar.update(1, postfix=job["site"])
            return out
        from ..core.raysetup import remote_task

        ray, task = remote_task(run_unit, cfg.address)
        pending = [task.remote(job) for job in todo]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            row = ray.get(done[0])  # a failed task raises its error here
            out.append(row)
            bar.update(1, postfix=row["site"])
    return out


def run_control(cfg: ControlConfig) -> ControlResult:
    """Make every missing sweep of ``cfg`` and gather the folder (see the module doc).

    Raises
    ------
    EncoderError
        An encoder that cannot be read, a site not in it, an encoder that does not fit
        the network loaded here (weights, library version or preprocessing).
    DatasetError
        A seed image that cannot be read (each named).
    """
    from ..store import ResultStore
    from .outputs import gather
    from .site_model import check_fits

    t0 = time.time()
    encs = _encoders(cfg)
    sites = _sites(cfg, encs)
    seeds = read_seeds(cfg.seeds, encs[0].meta["preprocessing"], cfg.n_seeds, cfg.seed_ids)
    for e in encs:  # fail here, not in a worker, when the network does not fit the encoder
        check_fits(e)
    store = ResultStore(cfg.out)
    jobs = _jobs(cfg, encs, sites, seeds)
    todo = [j for j in jobs if not store.exists(f"{SWEEPS}/{j['sweep_key']}.parquet")]
    log.info("%s: %d sites x %d seeds = %d sweeps, %d already in %s", cfg.kind, len(sites),
             len(seeds), len(jobs), len(jobs) - len(todo), cfg.out)
    _execute(cfg, todo)
    stimuli, sweeps, plots = gather(store, cfg, [j["sweep_key"] for j in jobs], encs)
    return ControlResult(cfg.out, len(todo), len(jobs) - len(todo), stimuli, sweeps, plots,
                         time.time() - t0)
