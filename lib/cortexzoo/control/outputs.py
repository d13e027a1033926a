"""What a control folder holds, gathered from its sweeps.

``R/`` is a *stimulus set* (a dataset folder, ``"stimulus_set": true``), so a lab can show
it as it is and bring its recordings back in a dataset folder that reuses its
``stimuli.parquet`` unchanged:

- ``stimuli.parquet``: one row per image, ``stimulus_id`` and ``image`` (``images/...png``,
  relative to the folder) first; then ``kind`` (``accentuate``/``controversial``),
  ``site``, ``seed_id``, ``seed_image``, ``level`` (-5..5; controversial: +1 ``a_high``,
  -1 ``b_high``), ``condition``, ``offset_sd``, ``target`` (the intended level),
  ``predicted`` (the encoder's prediction of the 8-bit image), ``error_sd``,
  ``seed_prediction``, ``response_sd``, ``distance_pixels`` (RMS, pixels in [0, 1]),
  ``distance_layer`` (relative distance in the regularization layer ``reg_layer``),
  ``encoder`` (URI), ``model``, ``layer``, ``region``, ``sweep_key``; controversial rows
  also ``encoder_b``, ``model_b``, ``layer_b``, ``pred_a``, ``pred_b``, ``target_a``,
  ``target_b``, ``z_a``, ``z_b`` (predictions minus the seed's, in SDs), ``seed_a``, ``seed_b``;
- ``images/<kind>/<sweep_key>/<condition>.png``, ``dataset.json``;
- ``control/accentuate.csv`` (site, seed, target, achieved prediction, distances, per
  image), ``control/accentuate-sweeps.csv`` (per sweep: Spearman and Pearson of achieved
  on intended, the largest miss in SDs, mean distances), ``control/controversial.csv``;
- ``control/sweeps/<sweep_key>.parquet``: each sweep's rows (the record that marks it done);
- ``plots/control-accentuate.png`` and ``plots/control-controversial.png``: contact sheets.
"""
from __future__ import annotations

import io
import logging
import posixpath

import numpy as np
import pandas as pd

__all__ = ["gather", "read_sweeps", "sweep_summary"]

log = logging.getLogger("cortexzoo")

SWEEPS = "control/sweeps"
FIRST = ["stimulus_id", "image", "kind", "site", "seed_id", "level", "condition", "offset_sd",
         "target", "predicted", "error_sd", "distance_pixels", "distance_layer"]
MAX_SHEET_SWEEPS = 12


def read_sweeps(store) -> pd.DataFrame:
    """Every sweep record under ``control/sweeps/`` of ``store``, in one table."""
    root = posixpath.join(store.root, SWEEPS)
    fs = store.fs
    fs.invalidate_cache(root)
    try:
        names = sorted(p for p in fs.ls(root, detail=False) if p.endswith(".parquet"))
    except FileNotFoundError:
        names = []
    parts = []
    for p in names:
        data = store.get_bytes(f"{SWEEPS}/{posixpath.basename(p)}")
        if data:
            parts.append(pd.read_parquet(io.BytesIO(data)))
    if not parts:
        return pd.DataFrame(columns=FIRST)
    df = pd.concat(parts, ignore_index=True)
    df = df.sort_values(["kind", "site", "seed_id", "level"], kind="stable").reset_index(drop=True)
    return df[[c for c in FIRST if c in df.columns] + [c for c in df.columns if c not in FIRST]]


def sweep_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per accentuation sweep: how well the achieved predictions follow the intended levels."""
    from scipy.stats import spearmanr

    acc = df[df["kind"] == "accentuate"]
    rows = []
    for (key, site, seed), g in acc.groupby(["sweep_key", "site", "seed_id"], sort=False):
        t, p = g["target"].to_numpy(float), g["predicted"].to_numpy(float)
        ok = np.std(t) > 0 and np.std(p) > 0
        rows.append({"site": site, "seed_id": seed, "n_images": len(g),
                     "spearman": float(spearmanr(t, p)[0]) if ok else float("nan"),
                     "pearson": float(np.corrcoef(t, p)[0, 1]) if ok else float("nan"),
                     "max_abs_error_sd": float(np.abs(g["error_sd"]).max()),
                     "mean_distance_pixels": float(g["distance_pixels"].mean()),
                     "mean_distance_layer": float(g["distance_layer"].mean()),
                     "model": g["model"].iloc[0], "layer": g["layer"].iloc[0],
                     "reg_layer": g["reg_layer"].iloc[0], "sweep_key": key})
    return pd.DataFrame(rows)


def _csv(store, rel: str, df: pd.DataFrame) -> None:
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    store.put_bytes(rel, buf.getvalue().encode())


def gather(store, cfg, keys: list[str], encoders) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Write the folder's stimuli.parquet, dataset.json, tables and contact sheets from
    every sweep in it; returns (all images, this run's sweep summary, plots)."""
    from ..core.uri import join
    from ..data import write_dataset

    df = read_sweeps(store)
    if not len(df):
        raise ValueError(f"no sweep in {store.uri}")
    encoders = set(df["encoder"].dropna())
    if "encoder_b" in df.columns:
        encoders |= set(df["encoder_b"].dropna())
    meta = {"name": "control-" + (posixpath.basename(store.uri.rstrip("/")) or "stimuli"),
            "description": "images synthesized by cortexzoo control (parametric control, paper "
                           "002): accentuation sweeps and controversial pairs; stimuli.parquet "
                           "says what each image was made for",
            "source": "cortexzoo control", "license": "", "response_unit": "",
            "stimulus_set": True,
            "control": {"kinds": sorted(df["kind"].unique().tolist()),
                        "encoders": sorted(encoders)}}
    write_dataset(store.uri, meta=meta, stimuli=df, neuroids=None, responses=None, overwrite=True)
    mine = df[df["sweep_key"].isin(set(keys))]
    summary = sweep_summary(mine)
    plots: dict[str, str] = {}
    acc = df[df["kind"] == "accentuate"]
    if len(acc):
        cols = ["site", "seed_id", "level", "offset_sd", "target", "predicted", "error_sd",
                "distance_pixels", "distance_layer", "reg_layer", "stimulus_id", "model", "layer"]
        _csv(store, "control/accentuate.csv", acc[cols])
        _csv(store, "control/accentuate-sweeps.csv", sweep_summary(acc))
    con = df[df["kind"] == "controversial"]
    if len(con):
        cols = ["site", "seed_id", "condition", "pred_a", "pred_b", "z_a", "z_b", "target_a",
                "target_b", "distance_pixels", "stimulus_id", "model", "layer", "model_b", "layer_b"]
        _csv(store, "control/controversial.csv", con[cols])
    if cfg.plot and len(mine):
        from .plots import contact_sheet

        kind = cfg.kind
        sheet = mine[mine["kind"] == kind]
        keys_shown = list(dict.fromkeys(sheet["sweep_key"]))[:MAX_SHEET_SWEEPS]
        if len(keys_shown) < sheet["sweep_key"].nunique():
            log.info("contact sheet: the first %d of %d sweeps", len(keys_shown),
                     sheet["sweep_key"].nunique())
        sheet = sheet[sheet["sweep_key"].isin(keys_shown)]
        images = {sid: store.get_bytes(rel) for sid, rel in zip(sheet["stimulus_id"], sheet["image"])}
        store.put_bytes(f"plots/control-{kind}.png", contact_sheet(sheet, images, kind))
        plots[kind] = join(store.uri, f"plots/control-{kind}.png")
    return df, summary, plots
