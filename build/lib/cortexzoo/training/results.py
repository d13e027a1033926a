"""What a fine-tuning run writes: score rows per region and split, the columns shared
by a run's rows, its unit key, the stored seeded splits and the saved network."""
from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..mapping.ceilings import population_ceilings
from ..mapping.metrics import neuroid_metrics
from .loaders import PreparedData, Splits, make_splits
from .networks import NetworkBundle, build_network
from .presets import FinetuneConfig

__all__ = ["METHOD", "score_rows", "common_columns", "bundle_info", "load_or_make_splits",
           "split_relpath", "load_checkpoint"]

#: Value of the score table's ``method`` column for fine-tuned networks.
METHOD = "finetune"


def _nanmean(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(np.mean(a[np.isfinite(a)])) if np.isfinite(a).any() else float("nan")


def score_rows(data: PreparedData, predictions: dict[str, np.ndarray],
               splits: tuple[str, ...] = ("val", "test")) -> tuple[list[dict], pd.DataFrame]:
    """Aggregated score rows (per region, split and metric) and per-neuroid values.

    Metrics: ``explained_variance`` and ``pearson_r`` (means over the region's neuroids,
    ceiled by mean reliability / mean sqrt(reliability) on the split's stimuli), and
    their medians ``explained_variance_median`` / ``pearson_r_median``.
    """
    rows: list[dict] = []
    per = []
    regions = np.asarray(data.regions)
    for split in splits:
        if split not in predictions:
            continue
        ev, r = neuroid_metrics(data.y[split], predictions[split])
        rel = data.reliability_by_split.get(split)
        per.append(pd.DataFrame({"neuroid_id": data.neuroid_ids, "region": regions,
                                 "split": split, "explained_variance": ev, "pearson_r": r,
                                 "reliability": rel if rel is not None else np.nan}))
        for region in sorted(set(regions.tolist())):
            m = regions == region
            ceil = population_ceilings(np.nan if rel is None else rel[m])
            common = dict(region=region, split=split, n_neuroids=int(m.sum()),
                          n_stimuli=int(len(data.y[split])))
            for metric, vals, c in (("explained_variance", ev[m], ceil["ev"]),
                                    ("pearson_r", r[m], ceil["r"])):
                rows.append(dict(common, metric=metric, value=_nanmean(vals), ceiling=c))
            fin_ev, fin_r = ev[m][np.isfinite(ev[m])], r[m][np.isfinite(r[m])]
            rows.append(dict(common, metric="explained_variance_median",
                             value=float(np.median(fin_ev)) if fin_ev.size else float("nan"),
                             ceiling=ceil["ev_median"]))
            rows.append(dict(common, metric="pearson_r_median",
                             value=float(np.median(fin_r)) if fin_r.size else float("nan"),
                             ceiling=ceil["r_median"]))
    return rows, (pd.concat(per, ignore_index=True) if per else pd.DataFrame())


def common_columns(cfg: FinetuneConfig, bundle_info: dict[str, Any], dataset_name: str,
                   run_id: str, splits: Splits) -> dict[str, Any]:
    """Score-row columns shared by every row of one fine-tuned network."""
    return dict(run_id=run_id, dataset=dataset_name or "unnamed", model=bundle_info["model"],
                source=bundle_info["source"], weights=bundle_info["weights"],
                layer=bundle_info["layer"], relative_depth=bundle_info["relative_depth"],
                reduction="gap", method=METHOD, seed=cfg.seed,
                preset=cfg.preset or "custom", config=cfg.to_json(),
                split_digest=splits.digest(), frozen=cfg.frozen,
                blocks=-1 if cfg.blocks is None else cfg.blocks, width=cfg.width,
                dropout=cfg.dropout, lr=cfg.lr, weight_decay=cfg.weight_decay,
                optimizer=cfg.optimizer)


def bundle_info(bundle: NetworkBundle) -> dict[str, Any]:
    n = bundle.n_blocks_available
    if n and bundle.layer != "all":
        k = int(bundle.layer.split(":")[1].split("/")[0])
        depth = k / n
    else:
        depth = 1.0
    return dict(model=bundle.model_name, source=bundle.source, weights=bundle.weights,
                layer=bundle.layer, relative_depth=depth, feature_dim=bundle.feature_dim)


def _unit_key(cfg: FinetuneConfig, fingerprint: str, splits: Splits) -> str:
    from cortexzoo.store import safe_key


    # the full config decides the unit; its hash keeps the key short
    return safe_key("finetune", cfg.preset or "custom", cfg.backbone, fingerprint[:12],
                    splits.digest(), hashlib.sha1(cfg.to_json().encode()).hexdigest()[:10])


def load_or_make_splits(store: Any, relpath: str, stimulus_ids: list[str],
                        cfg: FinetuneConfig) -> Splits:
    """The split stored at ``relpath`` (checked against the dataset), else a new one, stored."""
    stored = store.get_json(relpath)
    if stored is not None:
        sp = Splits.from_dict(stored)
        sp.indices(stimulus_ids)  # raises SplitError when it does not fit the dataset
        return sp
    sp = make_splits(stimulus_ids, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    store.put_json(relpath, sp.to_dict())
    return sp


def split_relpath(fingerprint: str, cfg: FinetuneConfig) -> str:
    """Where the split of a dataset (and split settings) is stored under a results URI;
    every fine-tuning run and pixel baseline on that dataset shares it."""
    return (f"splits/{fingerprint[:16]}-s{cfg.split_seed}-v{cfg.val_fraction:g}"
            f"-t{cfg.test_fraction:g}.json")


def _value(scores: pd.DataFrame, split: str, metric: str) -> float:
    """Mean over regions of one (split, metric) aggregate."""
    return _nanmean(scores[(scores["split"] == split) & (scores["metric"] == metric)]["value"])


def load_checkpoint(out: str, unit_key: str) -> torch.nn.Module:
    """Rebuild a fine-tuned network from ``finetune/<unit_key>/`` (config + model.pt)."""
    from cortexzoo.store import ResultStore

    store = ResultStore(out)
    cfg_bytes = store.get_bytes(f"finetune/{unit_key}/config.yaml")
    net = store.get_json(f"finetune/{unit_key}/network.json")
    blob = store.get_bytes(f"finetune/{unit_key}/model.pt")
    if cfg_bytes is None or net is None or blob is None:
        raise FileNotFoundError(f"no complete checkpoint under {out}/finetune/{unit_key}/")
    cfg = FinetuneConfig.from_yaml(cfg_bytes.decode())
    bundle = build_network(cfg, int(net["n_outputs"]))
    from cortexzoo.zoo.weights import safe_torch_load

    where = f"{out}/finetune/{unit_key}/model.pt"
    bundle.model.load_state_dict(safe_torch_load(io.BytesIO(blob), where))
    return bundle.model.eval()

