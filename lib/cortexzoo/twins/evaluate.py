"""Neural-prediction scores of trained twins on held-out test segments.

Per animal: per-neuron Pearson r within non-overlapping 100-sample chunks, averaged
over chunks, then over neurons (``chunked_pearson_r``), and the correlation over all
entries (``overall_pearson_r``). The animal's test targets are taken in time order
(session by session) and chunked as one sequence. The all-animals row averages the
per-neuron chunked r over every neuron of every animal and correlates all entries.
Where ground-truth rates exist (synthetic sessions) the ceiling is the same metric
between the true rate and the recorded responses; otherwise NaN.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from ..mapping.metrics import chunked_pearson, overall_pearson

__all__ = ["chunked_pearson", "overall_pearson", "predict_split", "score_twin",
           "evaluate_family"]


def trained_twins(store: Any) -> list[str]:
    """Pair keys of the exported twins under ``OUT/twins/best/`` (sorted)."""
    from ..store import join, url_to_fs

    fs, best_dir = url_to_fs(join(store.uri, "twins", "best"))
    fs.invalidate_cache(best_dir)
    try:
        listed = fs.ls(best_dir, detail=False)
    except FileNotFoundError:
        listed = []
    names = [n.rstrip("/").rsplit("/", 1)[-1] for n in listed]
    return sorted(n[:-3] for n in names if n.endswith(".pt") and not n.startswith("."))


def predict_split(model, coll, split: str = "test", batch_size: int = 256,
                  device: str = "cpu") -> dict[str, dict[str, np.ndarray | None]]:
    """Predictions of ``model`` on ``split`` per animal, in time order.

    Returns ``{animal: {"pred": [T, N], "y": [T, N], "rate": [T, N] or None}}``.
    Animals of ``coll`` that the model has no readout for raise ValueError.
    """
    import torch

    from ..data.sessions import ClipDataset

    missing = [a for a in coll.animals if a not in model.animals]
    if missing:
        raise ValueError(f"the twin has no readout for animal(s) {missing}; it was trained on "
                         f"{model.animals}")
    clip_len = model_clip_len(model)
    model = model.to(device).eval()
    out: dict[str, dict[str, np.ndarray | None]] = {}
    for a in coll.animals:
        k = model.animals.index(a)
        ds = ClipDataset(coll.by_animal(a), split, clip_len)
        if len(ds) == 0:
            raise ValueError(f"animal {a!r} has no {split!r} clips of {clip_len} frames")
        preds, ys, rates = [], [], []
        with torch.no_grad():
            for i in range(0, len(ds), batch_size):
                x, y, r = ds.get_batch(np.arange(i, min(i + batch_size, len(ds))), with_rates=True)
                preds.append(model(x.to(device), k).cpu().numpy())
                ys.append(y.numpy())
                rates.append(r.numpy())
        rate = np.concatenate(rates)
        out[a] = {"pred": np.concatenate(preds), "y": np.concatenate(ys),
                  "rate": None if np.isnan(rate).any() else rate}
    return out


def model_clip_len(model) -> int:
    return int(getattr(model, "clip_len", 5))


def _metrics(pred: np.ndarray, y: np.ndarray, chunk: int) -> tuple[np.ndarray, float]:
    return chunked_pearson(pred, y, chunk), overall_pearson(pred, y)


def score_twin(preds: dict[str, dict[str, Any]], chunk: int = 100) -> list[dict[str, Any]]:
    """Score rows (dicts) per animal plus an ``"all"`` row, both metrics each."""
    rows = []
    per_neuron_r, per_neuron_c, all_p, all_y, all_r = [], [], [], [], []
    have_rates = all(v["rate"] is not None for v in preds.values())
    for a, v in preds.items():
        r_n, r_all = _metrics(v["pred"], v["y"], chunk)
        if v["rate"] is not None:
            c_n, c_all = _metrics(v["rate"], v["y"], chunk)
        else:
            c_n, c_all = np.full_like(r_n, np.nan), float("nan")
        per_neuron_r.append(r_n)
        per_neuron_c.append(c_n)
        all_p.append(v["pred"].ravel())
        all_y.append(v["y"].ravel())
        if v["rate"] is not None:
            all_r.append(v["rate"].ravel())
        n_t, n_n = v["y"].shape
        rows += [
            {"animal": a, "metric": "chunked_pearson_r", "value": float(np.nanmean(r_n)),
             "ceiling": float(np.nanmean(c_n)) if np.isfinite(c_n).any() else float("nan"),
             "n_neuroids": n_n, "n_stimuli": n_t},
            {"animal": a, "metric": "overall_pearson_r", "value": r_all, "ceiling": c_all,
             "n_neuroids": n_n, "n_stimuli": n_t},
        ]
    r_cat, c_cat = np.concatenate(per_neuron_r), np.concatenate(per_neuron_c)
    n_n = int(sum(v["y"].shape[1] for v in preds.values()))
    n_t = int(sum(v["y"].shape[0] for v in preds.values()))
    rows += [
        {"animal": "all", "metric": "chunked_pearson_r", "value": float(np.nanmean(r_cat)),
         "ceiling": float(np.nanmean(c_cat)) if np.isfinite(c_cat).any() else float("nan"),
         "n_neuroids": n_n, "n_stimuli": n_t},
        {"animal": "all", "metric": "overall_pearson_r",
         "value": overall_pearson(np.concatenate(all_p), np.concatenate(all_y)),
         "ceiling": (overall_pearson(np.concatenate(all_r), np.concatenate(all_y))
                     if have_rates else float("nan")),
         "n_neuroids": n_n, "n_stimuli": n_t},
    ]
    return rows


def evaluate_family(data: str, out: str, *, keys: Sequence[str] | None = None,
                    chunk: int = 100, batch_size: int = 256, device: str | None = None,
                    run_id: str | None = None, plot: bool = True) -> "Any":
    """Score every exported twin under ``OUT/twins/best/`` on ``data``'s test split.

    Writes one scores unit per twin (``twin-<encoder>-seed<k>``: rows per animal and
    for all animals, both metrics, ``method="twin"``, ``region="V1"``) and, with
    ``plot``, ``OUT/plots/twins.png``. Returns the concatenated score table.
    """
    import os

    import pandas as pd
    import torch

    from ..data.sessions import load_sessions
    from ..store import ResultStore, make_score_rows
    from .train import load_twin, model_name

    store = ResultStore(out)
    available = trained_twins(store)
    if keys is not None:
        missing = [k for k in keys if k not in available]
        if missing:
            raise FileNotFoundError(f"no trained twin(s) {missing} under {store.uri_of('twins/best')}"
                                    f"; available: {available}")
        available = list(keys)
    if not available:
        raise FileNotFoundError(f"no trained twins under {store.uri_of('twins/best')}; run "
                                "`cortexzoo twins train` first")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    coll = load_sessions(data)
    dataset = str(coll.index.get("name") or os.path.basename(data.rstrip("/")) or data)
    run_id = run_id or f"twins-eval-{time.strftime('%Y%m%dT%H%M%S')}"
    tables = []
    for key in available:
        model, blob = load_twin(store.get_bytes(f"twins/best/{key}.pt"))
        enc, seed = blob["twin_config"]["encoder"], int(blob["twin_config"]["seed"])
        rows = score_twin(predict_split(model, coll, "test", batch_size, device), chunk)
        common = {"run_id": run_id, "dataset": dataset, "region": "V1",
                  "model": model_name(enc, seed), "source": "twin", "weights": "trained",
                  "layer": "readout", "relative_depth": 1.0, "reduction": "none",
                  "method": "twin", "split": "test", "seed": seed, "encoder": enc,
                  "best_epoch": int(blob.get("epoch", -1))}
        df = make_score_rows(common, rows)
        store.write_scores(df, f"twin-{key}")
        tables.append(df)
    scores = pd.concat(tables, ignore_index=True)
    store.compact(units=[f"twin-{key}" for key in available], run_id=run_id)
    store.write_manifest(run_id, {"kind": "twins-eval", "data": data, "twins": available,
                                  "chunk": chunk})
    if plot:
        from .plots import plot_twins

        store.put_bytes("plots/twins.png", plot_twins(scores))
    return scores
