"""Recordings with a planted ground truth: neuroids driven by one layer of one model.

The planted features are the layer's activations under a sparse random projection
with a seed *different* from any scan's, so the scan never sees the exact matrix
the responses were made from, only the same layer through another projection.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile

import numpy as np

log = logging.getLogger("cortexzoo")

EMBEDDED_VERSION = "v4"  # v4: stimuli presented whole, the offline weights' own normalization
EMBEDDED = dict(model="timm:tf_efficientnet_lite0@trained", layer=None, n_stimuli=200,
                image_size=96, n_neuroids=40, n_reps=4, seed=0)
_PLANT_SEED_OFFSET = 7919


def pick_middle_layer(model) -> str:
    return min(model.layers, key=lambda n: abs(model.relative_depth[n] - 0.5))


def crop_arrays(pre, images) -> "object":
    """uint8 image arrays -> the model input, by the scan's own decode path (presented
    as ``pre.mode`` says)."""
    from PIL import Image

    from ..data.images import present

    crops = np.stack([present(Image.fromarray(np.asarray(im, dtype=np.uint8)), pre.geometry())
                      for im in images])
    return pre.normalize_uint8(crops)


def planted_features(model, layer: str, images: np.ndarray, seed: int, batch_size: int = 32,
                     n_components: int = 2048, n_pcs: int | None = 10) -> np.ndarray:
    """The layer's activations (under a projection no scan uses), reduced to the scores
    of their top ``n_pcs`` principal components: neuroids are then tuned to the layer's
    dominant dimensions, as real populations are low-dimensional, which a few hundred
    stimuli can identify. ``n_pcs=None`` keeps every projected dimension."""
    from ..features.extract import FeatureExtractor
    from ..features.reduce import ReductionConfig

    red = ReductionConfig(method="srp", n_components=n_components,
                          seed=seed + _PLANT_SEED_OFFSET)
    ext = FeatureExtractor(model, [layer], red)
    out = []
    for start in range(0, len(images), batch_size):
        out.append(ext(crop_arrays(model.preprocess, images[start:start + batch_size]))[layer])
    feats = np.concatenate(out).astype(np.float64)
    if n_pcs is None:
        return feats
    centered = feats - feats.mean(axis=0)
    u, sv, _ = np.linalg.svd(centered, full_matrices=False)
    k = int(min(n_pcs, np.sum(sv > sv[0] * 1e-6)))
    return u[:, :k] * sv[:k]


def make_planted_dataset(uri: str, model: str = EMBEDDED["model"], layer: str | None = None,
                         n_stimuli: int = 200, image_size: int = 96, n_neuroids: int = 40,
                         n_reps: int = 4, seed: int = 0, mean_rate: float = 8.0,
                         input_size: int | None = None, n_pcs: int | None = 10,
                         stimulus: str = "whole") -> str:
    """Write a dataset folder whose neuroids are noisy (Poisson, with repetitions)
    functions of ``layer`` of ``model``; ``dataset.json`` records the truth."""
    from ..data.synthetic import make_images, planted_dataset
    from ..zoo import load_model

    loaded = load_model(model, input_size=input_size, stimulus=stimulus)
    layer = layer or pick_middle_layer(loaded)
    if layer not in loaded.relative_depth:
        raise ValueError(f"{model}: no layer {layer!r}; available: {loaded.layers}")
    images = make_images(n_stimuli, size=image_size, seed=seed)
    feats = planted_features(loaded, layer, images, seed, n_pcs=n_pcs)
    truth = {"model": str(loaded.spec), "layer": layer,
             "relative_depth": float(loaded.relative_depth[layer]), "seed": seed,
             "n_reps": n_reps, "mean_rate": mean_rate, "input_size": input_size,
             "n_pcs": n_pcs, "preprocessing": loaded.preprocess.to_dict()}
    return planted_dataset(uri, images, feats, n_neuroids=n_neuroids, n_reps=n_reps, seed=seed,
                           mean_rate=mean_rate,
                           meta_extra={"name": f"planted-{loaded.spec.key}-{seed}",
                                       "ground_truth": truth})


def cache_dir() -> str:
    root = os.environ.get("CORTEXZOO_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "cortexzoo")
    return root


def ensure_embedded_dataset() -> str:
    """The embedded default dataset, generated once into the cache directory."""
    path = os.path.join(cache_dir(), "datasets", f"embedded-{EMBEDDED_VERSION}")
    if os.path.exists(os.path.join(path, "responses.npy")):
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    log.info("generating the embedded planted dataset in %s", path)
    tmp = tempfile.mkdtemp(prefix=".embedded-", dir=os.path.dirname(path))
    try:
        make_planted_dataset(tmp, **EMBEDDED)
        try:
            os.replace(tmp, path)
        except OSError:  # another process made it first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
