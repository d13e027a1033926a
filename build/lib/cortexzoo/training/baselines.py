"""Pixel baselines of paper 000 on the fine-tuning split: linear, PCA + linear, ridge
(5-fold alpha search) and PCA (1000 components) + ridge.

Features are the RGB pixels of each image resized (whole image, no crop) to
``size x size`` and scaled to [0, 1]. The models are fit on train + validation stimuli
(the ridge models pick alpha by 5-fold cross-validation inside that set; nothing else
needs a validation set) and scored on the test stimuli of the same stored split that
the fine-tuned networks use, so their rows sit next to each other in one scores table.
The number of principal components is ``min(n_components, n_fit, n_features)``.
NaN targets (a stimulus never shown for a neuroid) are imputed with the training mean
for fitting and skipped for scoring.
"""
from __future__ import annotations

import io
import time
import uuid
from typing import Sequence

import numpy as np
import pandas as pd

from .finetune import common_columns, load_or_make_splits, score_rows, split_relpath
from .loaders import PreparedData, prepare_data
from .presets import FinetuneConfig

__all__ = ["PIXEL_METHODS", "fit_pixel_baseline", "pixel_baseline_scores", "run_pixel_baselines"]

#: method column value -> Table 1 label
PIXEL_METHODS: dict[str, str] = {
    "linear": "Linear",
    "pca_linear": "Linear + PCA",
    "ridge_kfold": "Ridge Regression",
    "pca_ridge_kfold": "Ridge Regression + PCA",
}


def _pixels(x_u8: np.ndarray) -> np.ndarray:
    return x_u8.reshape(len(x_u8), -1).astype(np.float64) / 255.0


def fit_pixel_baseline(method: str, X: np.ndarray, Y: np.ndarray, n_components: int = 1000,
                       alphas: Sequence[float] | None = None, n_splits: int = 5):
    """Fit one pixel baseline; returns a fitted estimator with ``predict`` (and
    ``alpha_`` / ``n_components_`` where they apply)."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline

    from cortexzoo.mapping import KFoldRidge, PCARidge

    k = int(min(n_components, X.shape[0], X.shape[1]))
    if method == "linear":
        est = LinearRegression().fit(X, Y)  # minimum-norm least squares when p > n
    elif method == "pca_linear":
        est = make_pipeline(PCA(n_components=k, svd_solver="full"), LinearRegression()).fit(X, Y)
        est.n_components_ = k
    elif method == "ridge_kfold":
        est = KFoldRidge(alphas=alphas, n_splits=n_splits).fit(X, Y)
    elif method == "pca_ridge_kfold":
        est = PCARidge(n_components=k, alphas=alphas, cv=n_splits, alpha_per_target=False).fit(X, Y)
    else:
        raise ValueError(f"unknown pixel baseline {method!r}; choose from {list(PIXEL_METHODS)}")
    return est


def pixel_baseline_scores(data: PreparedData, methods: Sequence[str] = tuple(PIXEL_METHODS),
                          n_components: int = 1000, alphas: Sequence[float] | None = None
                          ) -> list[tuple[str, list[dict], pd.DataFrame, dict]]:
    """(method, score rows, per-neuroid table, extras) for each baseline on `data`'s test split."""
    bad = [m for m in methods if m not in PIXEL_METHODS]
    if bad:
        raise ValueError(f"unknown pixel baseline(s) {bad}; choose from {list(PIXEL_METHODS)}")
    X = np.concatenate([_pixels(data.x["train"]), _pixels(data.x["val"])])
    Y = np.concatenate([data.y["train"], data.y["val"]])
    mu = np.nanmean(Y, axis=0)
    Y = np.where(np.isfinite(Y), Y, mu)
    Xte = _pixels(data.x["test"])
    out = []
    for m in methods:
        est = fit_pixel_baseline(m, X, Y, n_components, alphas)
        pred = np.asarray(est.predict(Xte), dtype=np.float64).reshape(len(Xte), -1)
        rows, per = score_rows(data, {"test": pred}, splits=("test",))
        alpha = getattr(est, "alpha_", None)
        extras = {"alpha": float(np.median(alpha)) if alpha is not None else float("nan"),
                  "n_components": int(getattr(est, "n_components_", 0) or 0) or None}
        out.append((m, rows, per, extras))
    return out


def run_pixel_baselines(data_uri: str, out: str, size: int = 32,
                        methods: Sequence[str] = tuple(PIXEL_METHODS),
                        n_components: int = 1000, cfg: FinetuneConfig | None = None,
                        run_id: str | None = None, force: bool = False) -> pd.DataFrame:
    """Fit the pixel baselines on the shared split of ``data_uri`` and write their scores.

    The split settings (val/test fractions, split seed, region) come from `cfg` (default:
    the defaults of :class:`FinetuneConfig`), so that they match the fine-tuning runs.
    Writes ``scores/<unit>.parquet`` per method (method = linear, pca_linear,
    ridge_kfold, pca_ridge_kfold; model ``baseline:pixels<size>@none``) and
    ``finetune/<unit>/neuroids.parquet``. Returns the score rows.
    """
    from cortexzoo.data import load_dataset
    from cortexzoo.store import ResultStore, make_score_rows, safe_key
    from cortexzoo.zoo import PreprocessConfig

    cfg = cfg or FinetuneConfig(backbone="custom:shallow_cnn", preset="pixel-baselines")
    if size < 2:
        raise ValueError(f"pixel size must be >= 2, got {size}")
    store = ResultStore(out)
    ds = load_dataset(data_uri)
    fp = ds.fingerprint()
    splits = load_or_make_splits(store, split_relpath(fp, cfg),
                                 ds.stimuli["stimulus_id"].astype(str).tolist(), cfg)
    units = {m: safe_key("pixels", m, size, n_components, fp[:12], splits.digest(),
                         cfg.region or "all") for m in methods}
    todo = [m for m in methods if force or not store.has_unit(units[m])]
    run_id = run_id or f"pixels-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    frames = []
    if todo:
        pre = PreprocessConfig(size, size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "bilinear")
        data = prepare_data(ds, splits, pre, cfg.region, seed=cfg.seed)
        info = dict(model=f"baseline:pixels{size}@none", source="baseline", weights="none",
                    layer="pixels", relative_depth=float("nan"))
        for m, rows, per, extras in pixel_baseline_scores(data, todo, n_components):
            common = common_columns(cfg.replace(preset="pixel-baselines"), info, ds.name,
                                    run_id, splits)
            # the network settings do not apply to a pixel regression
            for k in ("config", "frozen", "blocks", "width", "dropout", "lr", "weight_decay",
                      "optimizer"):
                common.pop(k, None)
            common.update(method=m, reduction="pixels" if "pca" not in m
                          else f"pca{extras['n_components']}", alpha=extras["alpha"],
                          n_components=extras["n_components"] or 0, pixel_size=size)
            df = make_score_rows(common, rows)
            buf = io.BytesIO()
            per.assign(run_id=run_id, model=info["model"], method=m).to_parquet(buf, index=False)
            store.put_bytes(f"finetune/{units[m]}/neuroids.parquet", buf.getvalue())
            store.write_scores(df, units[m])
            frames.append(df)
    done = [m for m in methods if m not in todo]
    if done:
        old = store.read_scores(filters=[("unit_key", "in", [units[m] for m in done])])
        frames.append(old)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
