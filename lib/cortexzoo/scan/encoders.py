"""Encoding models a scan saves (``cortexzoo scan --save-encoders``): per (model, layer,
region), the ridge readout of every site at the site's own alpha, with what is needed to
predict the site from pixels again (SCIENCE.md section 7: the *encoding axes* that
parametric control optimizes along).

An encoder is one folder, ``encoders/<dataset>--<scan>/<model>/<layer>/<region>/`` under
the results URI, and its URI is that folder's:

``weights.safetensors``
    ``coef`` [k, t] (reduced features -> sites), ``intercept`` [t] and ``x_mean`` [k] (the
    features' mean over the scan's stimuli), float64 as the scan's ridge computed them
    (float32 with ``dtype: float32`` scoring). safetensors is a JSON header and raw
    tensors: loading executes nothing (no pickle).
``encoder.json``
    ``format``/``version``; the model (spec, ``model_key`` that seeds the projection,
    ``weights_id``: the identity of the weights' numbers and of the library that builds
    the architecture); the layer and its relative depth; the region; the preprocessing
    (input size, resize, mean/std, interpolation, stimulus mode ``whole``/``crop``); the
    reduction (method, k, base seed, density, the layer's own seed
    ``layer_seed(seed, model_key, layer)`` and the matrix recipe of
    :func:`cortexzoo.features.reduce.srp_matrix`); the feature standardization (centered on
    ``x_mean``, not scaled: the scan's ridge works on centered raw features); the ridge
    (alpha grid, intercept, how alpha is chosen); per site its ``neuroid_id``,
    ``subject``, chosen ``alpha``, leave-one-out ``r`` and explained variance, and the mean
    and SD of its mean responses over the stimuli; the dataset, scan key, run and code
    version; the sha256 of the weights file (checked on load).

Prediction: ``features @ coef + intercept`` (the ridge fit on all stimuli with an
unpenalized intercept: the same numbers as scikit-learn's ``Ridge(alpha)`` per site).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .. import mapping
from ..core import cache_key
from ..core.uri import join, normalize_uri, read_bytes

if TYPE_CHECKING:  # features.reduce imports torch: encoder tasks on the workers do not
    from ..features.reduce import ReductionConfig

__all__ = ["ENCODER_FORMAT", "ENCODER_VERSION", "Encoder", "EncoderError", "choose_layers",
           "fit_encoders", "load_encoder", "save_encoders", "write_encoder"]

log = logging.getLogger("cortexzoo")

ENCODER_FORMAT = "cortexzoo.encoder"
ENCODER_VERSION = 1
JSON_NAME, WEIGHTS_NAME = "encoder.json", "weights.safetensors"
SRP_RECIPE = ("cortexzoo.features.reduce.srp_matrix: k x p CSR matrix, entries 0 with "
              "probability 1 - density, else +-sqrt(1 / (density k)); positions by geometric "
              "gaps and signs from numpy.random.default_rng(layer_seed); density 1/sqrt(p) "
              "unless given; applied to the layer's flattened output (float32)")


class EncoderError(ValueError):
    """An encoder that cannot be read, or does not fit what it is used with."""


@dataclass
class Encoder:
    """One saved encoding model: ``predict(X) = X @ coef + intercept`` for reduced
    features ``X`` [n, k] of ``meta["layer"]`` of ``meta["model"]``."""

    meta: dict
    coef: np.ndarray        # [k, t]
    intercept: np.ndarray   # [t]
    x_mean: np.ndarray      # [k]
    uri: str | None = None

    @property
    def sites(self) -> list[str]:
        return list(self.meta["sites"]["neuroid_id"])

    @property
    def spec(self) -> str:
        return self.meta["model"]

    @property
    def layer(self) -> str:
        return self.meta["layer"]

    @property
    def reduction(self) -> "ReductionConfig":
        from ..features.reduce import ReductionConfig

        r = self.meta["reduction"]
        return ReductionConfig(method=r["method"], n_components=int(r["n_components"]),
                               seed=int(r["seed"]), density=r.get("density"),
                               max_flatten=int(r.get("max_flatten", 200_000)))

    def site_stat(self, key: str) -> np.ndarray:
        return np.asarray(self.meta["sites"][key], dtype=np.float64)

    def site_index(self, sites) -> list[int]:
        """Column of each named site; an :class:`EncoderError` names every unknown one."""
        pos = {s: i for i, s in enumerate(self.sites)}
        missing = [s for s in sites if s not in pos]
        if missing:
            shown = ", ".join(self.sites[:12]) + (" ..." if len(self.sites) > 12 else "")
            raise EncoderError(f"site(s) {missing} not in the encoder {self.uri or ''} "
                               f"({self.meta['model']} {self.layer}, region "
                               f"{self.meta['region']!r}; its {len(self.sites)} sites: {shown})")
        return [pos[s] for s in sites]

    def predict(self, X: np.ndarray, sites=None) -> np.ndarray:
        """Predicted responses [n, t] (or the named sites') of features ``X`` [n, k]."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.coef.shape[0]:
            raise EncoderError(f"features of shape {X.shape} do not fit the encoder's "
                               f"{self.coef.shape[0]} dimensions")
        cols = slice(None) if sites is None else self.site_index(sites)
        return X @ self.coef[:, cols] + self.intercept[cols]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encoder_files(enc: Encoder) -> tuple[bytes, bytes]:
    """(encoder.json bytes, weights.safetensors bytes) of ``enc``."""
    from safetensors.numpy import save

    blob = save({k: np.ascontiguousarray(getattr(enc, k)) for k in ("coef", "intercept", "x_mean")},
                metadata={"format": ENCODER_FORMAT, "version": str(ENCODER_VERSION)})
    meta = dict(enc.meta, weights_file=WEIGHTS_NAME, weights_sha256=_sha256(blob))
    enc.meta = meta
    return json.dumps(meta, indent=2, sort_keys=True, default=_json_default).encode(), blob


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


def write_encoder(store, folder: str, enc: Encoder) -> str:
    """Write ``enc`` under ``folder`` of ``store`` (weights first, then the JSON that
    marks it complete); returns the encoder's URI."""
    meta_bytes, blob = encoder_files(enc)
    store.put_bytes(f"{folder}/{WEIGHTS_NAME}", blob)
    store.put_bytes(f"{folder}/{JSON_NAME}", meta_bytes)
    enc.uri = join(store.uri, folder)
    return enc.uri


def load_encoder(uri: str) -> Encoder:
    """The encoder saved at ``uri`` (its folder, or its ``encoder.json``), local or remote.

    Raises
    ------
    EncoderError
        Nothing there, not an encoder, a newer format version, a weights file whose
        digest or shapes do not match its JSON.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load

    uri = normalize_uri(uri)
    folder = uri[:-len(JSON_NAME) - 1] if uri.endswith("/" + JSON_NAME) else uri
    try:
        meta = json.loads(read_bytes(join(folder, JSON_NAME)).decode("utf-8"))
    except FileNotFoundError:
        raise EncoderError(f"no encoder at {folder} (no {JSON_NAME}; a scan saves encoders "
                           "with --save-encoders, under RESULTS/encoders/)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EncoderError(f"{folder}/{JSON_NAME} is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != ENCODER_FORMAT:
        raise EncoderError(f"{folder}/{JSON_NAME} is not a cortexzoo encoder")
    if int(meta.get("version", 0)) > ENCODER_VERSION:
        raise EncoderError(f"encoder {folder} has format version {meta['version']}; this "
                           f"cortexzoo reads up to {ENCODER_VERSION} (upgrade cortexzoo)")
    try:
        blob = read_bytes(join(folder, meta.get("weights_file", WEIGHTS_NAME)))
    except FileNotFoundError:
        raise EncoderError(f"encoder {folder}: its weights file is missing") from None
    if meta.get("weights_sha256") and _sha256(blob) != meta["weights_sha256"]:
        raise EncoderError(f"encoder {folder}: the weights file does not match its digest "
                           "(truncated or replaced)")
    try:
        arrays = load(blob)
    except (SafetensorError, ValueError) as e:
        raise EncoderError(f"encoder {folder}: unreadable weights ({e})") from None
    coef, b, xm = (arrays.get(k) for k in ("coef", "intercept", "x_mean"))
    t = len(meta.get("sites", {}).get("neuroid_id", []))
    if coef is None or b is None or xm is None or coef.ndim != 2 or coef.shape[1] != t \
            or b.shape != (t,) or xm.shape != (coef.shape[0],):
        raise EncoderError(f"encoder {folder}: weights of shapes "
                           f"{[None if a is None else a.shape for a in (coef, b, xm)]} do not "
                           f"fit its {t} sites")
    return Encoder(meta, coef, b, xm, uri=folder)


# ------------------------------------------------------------------ saving from a scan
def choose_layers(scores: pd.DataFrame, save: "str | list[str]"
                  ) -> dict[tuple[str, str], dict[str, str]]:
    """``{(model, region): {layer: why}}`` to save. ``"best"``: the ridge layer the
    leaderboard chose on each seeded half (``heldout:half_a`` / ``heldout:half_b``; one
    layer when both halves agree), else (too few stimuli for halves) the in-sample best
    (``insample``); a list: those layers of every model that has them (``listed``)."""
    from ..report.tables import best_layers, heldout_layers

    ridge = scores[(scores["method"] == "ridge_gcv")] if len(scores) else scores
    out: dict[tuple[str, str], dict[str, str]] = {}
    if not len(ridge):
        return out
    if save == "best":
        held = heldout_layers(ridge, "ridge_gcv")
        for r in held.itertuples():
            d = out.setdefault((r.model, r.region), {})
            d.setdefault(r.layer_a, "heldout:half_a")
            if r.layer_b != r.layer_a:
                d.setdefault(r.layer_b, "heldout:half_b")
        ins = best_layers(ridge, "ridge_gcv")
        for r in ins.itertuples():
            if (r.model, r.region) not in out:
                out[(r.model, r.region)] = {r.layer: "insample"}
        return out
    layers = [save] if isinstance(save, str) else list(save)
    have = ridge.groupby(["model", "region"])["layer"].agg(set)
    for (model, region), got in have.items():
        for layer in layers:
            if layer in got:
                out.setdefault((model, region), {})[layer] = "listed"
    missing = [n for n in layers if not any(n in d for d in out.values())]
    if missing:
        raise ValueError(f"--save-encoders: no scanned model has layer(s) {missing}")
    return out


def fit_encoders(X: np.ndarray, Y: np.ndarray, alphas, backend: str = "numpy",
                 dtype: str = "float64", device: str | None = None) -> dict[str, np.ndarray]:
    """Ridge of ``Y`` [n, t] on ``X`` [n, k] as the scan scores it (exact leave-one-out
    choice of alpha per site, unpenalized intercept), with its coefficients."""
    solver = mapping.GCVSolver(np.asarray(X, dtype=np.float64), alphas=alphas, backend=backend,
                               dtype=dtype, device=device)
    res = solver.loo(Y, return_predictions=False, return_coef=True)
    return {"coef": np.asarray(res.coef), "intercept": np.asarray(res.intercept),
            "alpha": np.asarray(res.alpha, np.float64), "r": np.asarray(res.pearson, np.float64),
            "ev": np.asarray(res.ev, np.float64), "alphas": np.asarray(solver.alphas, np.float64)}


def _layer_features(store, dataset, spec, layer: str, cfg) -> np.ndarray:
    """The reduced features the scan scored (from the feature cache, else extracted again)."""
    from .model import cached_features

    X = cached_features(store, dataset, spec, layer, cfg) if cfg.cache_features else None
    if X is not None:
        return X
    from ..features.pipeline import extract_local
    from ..zoo import load_model

    log.info("encoders: %s %s not in the feature cache; extracting it again", spec, layer)
    lf = extract_local(dataset, load_model(spec, input_size=cfg.input_size, stimulus=cfg.stimulus),
                       layers=[layer], reduction=cfg.reduction, batch_size=cfg.batch_size,
                       progress=False)
    return lf.features[layer]


def fit_layer_task(cache, feature_key: str, targets, regions: list[str], scoring) -> dict | None:
    """One layer's encoders, one per region, from its cached features (None when they are
    not in the cache); runs where the scan's scoring runs (a Ray task on the workers, so
    the driver holds no features) and returns only the fits and the features' mean."""
    X = cache.read(feature_key)
    if X is None:
        return None
    return _fit_regions(np.asarray(X, dtype=np.float64), targets, regions, scoring)


def _fit_regions(X: np.ndarray, targets, regions: list[str], scoring) -> dict:
    from .scoring import solver_settings

    backend, dtype, device = solver_settings(scoring)
    if scoring.dtype == "auto":
        dtype = "float64"  # a saved readout is fitted once: exact beats fast
    fits = {region: fit_encoders(X, targets.Y[:, targets.regions[region].columns],
                                 scoring.alphas, backend, dtype, device) for region in regions}
    return {"fits": fits, "x_mean": X.mean(axis=0).astype(np.float64), "shape": X.shape,
            "backend": backend, "dtype": dtype}


def save_encoders(cfg, dataset, targets, store, scores: pd.DataFrame, scan_key: str,
                  run_id: str, workers: dict | None = None) -> list[dict]:
    """Fit and save the encoders ``cfg.save_encoders`` asks for (see
    :func:`choose_layers`); an encoder already saved for the same scan key, model and
    layer is kept. With ``workers`` (a scan scoring on Ray workers: its plan, with the
    targets in the object store) each layer is fitted by a Ray task beside the scoring;
    else here. Returns one index entry per encoder (also written to
    ``encoders/<dataset>--<scan>/index.json``)."""
    from ..features.cache import FeatureCache
    from ..report.tables import scan_label
    from ..store import safe_key
    from ..zoo import parse_spec
    from ..zoo.weights import weights_identity
    from .model import describe

    if targets.Y is None or not targets.regions:
        log.warning("--save-encoders: the dataset has no recorded responses; nothing to save")
        return []
    wanted = choose_layers(scores, cfg.save_encoders)
    label = scan_label(dataset.name, scan_key)
    by_model: dict[str, dict[str, dict[str, str]]] = {}
    for (model, region), layers in wanted.items():
        for layer, why in layers.items():
            by_model.setdefault(model, {}).setdefault(layer, {})[region] = why
    depth = scores.drop_duplicates(["model", "layer"]).set_index(["model", "layer"])["relative_depth"]
    cache = FeatureCache(store, dataset.stimulus_fingerprint(), dataset.n_stimuli)
    index: list[dict] = []
    jobs: list[dict] = []   # (model, layer) with the regions still to fit
    for model, layers in sorted(by_model.items()):
        spec = parse_spec(model)
        wid = weights_identity(spec)
        pre = describe(spec, cfg).preprocess.to_dict()
        for layer, regions in sorted(layers.items()):
            todo = {}
            for region, why in sorted(regions.items()):
                folder = "/".join(["encoders", label, spec.key, safe_key(layer), safe_key(region)])
                old = store.get_json(f"{folder}/{JSON_NAME}")
                if old and old.get("scan_key") == scan_key and old.get("weights_id") == wid:
                    index.append(_entry(old, join(store.uri, folder), why))
                else:
                    todo[region] = (folder, why)
            if todo:
                key = cache.key(cache_key.model_id(str(spec), wid), layer, cfg.reduction, pre)
                jobs.append(dict(model=model, spec=spec, wid=wid, pre=pre, layer=layer,
                                 todo=todo, key=key))
    for job, fit in zip(jobs, _fit_jobs(jobs, cache, targets, cfg, workers)):
        if fit is None:
            X = np.asarray(_layer_features(store, dataset, job["spec"], job["layer"], cfg),
                           dtype=np.float64)
            fit = _fit_regions(X, targets, list(job["todo"]), cfg.scoring)
        for region, (folder, why) in sorted(job["todo"].items()):
            enc = _encoder(cfg, dataset, targets, job, region, why, fit, scan_key, run_id,
                           float(depth.get((job["model"], job["layer"]), float("nan"))))
            uri = write_encoder(store, folder, enc)
            index.append(_entry(enc.meta, uri, why))
            log.info("encoder %s %s %s (%d sites, mean r %.3f): %s", job["model"], job["layer"],
                     region, len(enc.meta["sites"]["r"]),
                     float(np.nanmean(enc.meta["sites"]["r"])), uri)
    if index:
        store.put_json(f"encoders/{label}/index.json", index)
    return index


def _fit_jobs(jobs: list[dict], cache, targets, cfg, workers: dict | None) -> list:
    """Each job's fits (None where its features are not cached), in the jobs' order."""
    if workers is None or not jobs:  # here, as the scan scored: from its cache if it keeps one
        return [fit_layer_task(cache, j["key"], targets, list(j["todo"]), cfg.scoring)
                if cfg.cache_features else None for j in jobs]
    from ..core.raysetup import remote_task

    sc = workers["scoring"]   # the scoring tasks' resources: the extraction is over
    ray, task = remote_task(fit_layer_task, cfg.address, num_cpus=sc["num_cpus"],
                            gpus=sc.get("num_gpus", 0), max_retries=3)
    refs = [task.remote(cache, j["key"], workers["targets"], list(j["todo"]), cfg.scoring)
            for j in jobs]
    return ray.get(refs)


def _encoder(cfg, dataset, targets, job: dict, region: str, why: str, fit: dict, scan_key: str,
             run_id: str, depth: float) -> Encoder:
    from ..features.reduce import layer_seed
    from ..store import code_version

    spec, layer, f = job["spec"], job["layer"], fit["fits"][region]
    rt = targets.regions[region]
    Y = targets.Y[:, rt.columns]
    red = dataclasses.asdict(cfg.reduction)
    red.update(name=cfg.reduction.name, model_key=spec.key,
               layer_seed=layer_seed(cfg.reduction.seed, spec.key, layer),
               recipe=SRP_RECIPE if cfg.reduction.method == "srp" else cfg.reduction.method)
    subjects = (targets.subjects[rt.columns].tolist() if targets.subjects is not None
                else [""] * rt.columns.size)
    n, k = fit["shape"]
    meta = {
        "format": ENCODER_FORMAT, "version": ENCODER_VERSION,
        "model": str(spec), "model_key": spec.key, "weights_id": job["wid"],
        "model_id": cache_key.model_id(str(spec), job["wid"]), "layer": layer,
        "relative_depth": depth, "region": region, "chosen": why,
        "preprocessing": job["pre"], "stimulus": cfg.stimulus, "input_size": cfg.input_size,
        "reduction": red,
        "standardization": {"center": True, "scale": False,
                            "note": "features centered on x_mean (the scan's stimuli), "
                                    "not scaled"},
        "ridge": {"alphas": f["alphas"].tolist(), "fit_intercept": True,
                  "alpha_choice": "per site, exact leave-one-out error",
                  "backend": fit["backend"], "dtype": fit["dtype"]},
        "sites": {"neuroid_id": [str(s) for s in rt.neuroid_ids],
                  "subject": [str(s) for s in subjects],
                  "alpha": f["alpha"].tolist(), "r": f["r"].tolist(), "ev": f["ev"].tolist(),
                  "response_mean": Y.mean(axis=0).tolist(),
                  "response_sd": Y.std(axis=0, ddof=1).tolist()},
        "n_features": int(k), "n_stimuli": int(n),
        "dataset": dataset.name, "dataset_fingerprint": dataset.fingerprint(),
        "scan_key": scan_key, "run_id": run_id, "code_version": code_version(),
        "created_at": pd.Timestamp.now("UTC").isoformat(),
    }
    return Encoder(meta, f["coef"], f["intercept"], fit["x_mean"])


def _entry(meta: dict, uri: str, why: str) -> dict:
    r = np.asarray(meta["sites"]["r"], dtype=np.float64)
    return {"model": meta["model"], "layer": meta["layer"], "region": meta["region"],
            "chosen": why, "n_sites": int(r.size), "mean_r": float(np.nanmean(r)) if r.size else None,
            "uri": uri}
