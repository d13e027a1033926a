"""``cortexzoo control score``: how well the recorded (or oracle-predicted) responses to a
control folder's images follow what the images were made for (SCIENCE.md section 7).

Responses come from a dataset folder whose stimuli are (some of) the folder's images,
matched by ``stimulus_id`` (the lab reuses the folder's ``stimuli.parquet``), and whose
neuroids are named as the sites (``neuroid_id``); each image's response is its mean over
repetitions. Or from an *oracle*: an encoder (another model's, or a digital twin's
standing in for the animal) that predicts each image as the scan would present it.

- **Control score**, per accentuation sweep (site, seed): Pearson r between the intended
  levels (``target``) and the responses; per site the mean and SD over its seeds; overall
  the mean and SD over sites of the per-site means (the paper's "mean r over seed
  images, SD over channels"), and the mean and SD over every sweep.
- **Controversial pairs**, per (site, seed): the response to A's image minus the response
  to B's: positive, the recordings follow A; per site and overall the fraction that
  follows A, and the Pearson r of the responses with A's and with B's predictions over
  the site's controversial images.

Outputs under ``--out`` (default ``R/control/score-<responses>``): ``sweeps.csv``,
``sites.csv``, ``controversial.csv``, ``summary.json``.
"""
from __future__ import annotations

import io
import json
import logging
import posixpath
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..core.uri import join, normalize_uri, read_bytes

__all__ = ["ScoreResult", "control_scores", "oracle_responses", "recorded_responses", "run_score"]

log = logging.getLogger("cortexzoo")


@dataclass
class ScoreResult:
    out: str
    sweeps: pd.DataFrame            # one row per accentuation sweep
    sites: pd.DataFrame             # one row per site
    controversial: pd.DataFrame     # one row per (site, seed) pair
    summary: dict = field(default_factory=dict)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 3 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def read_stimuli(stimuli: str) -> pd.DataFrame:
    """A control folder's ``stimuli.parquet``."""
    uri = normalize_uri(stimuli)
    try:
        df = pd.read_parquet(io.BytesIO(read_bytes(join(uri, "stimuli.parquet"))))
    except FileNotFoundError:
        raise FileNotFoundError(f"{uri} has no stimuli.parquet (give the folder that "
                                "`cortexzoo control accentuate/controversial --out` wrote)") from None
    need = {"stimulus_id", "kind", "site", "seed_id", "target"}
    if not need <= set(df.columns):
        raise ValueError(f"{uri}/stimuli.parquet is not a control folder's (missing "
                         f"{sorted(need - set(df.columns))})")
    return df


def recorded_responses(stim: pd.DataFrame, responses: str) -> np.ndarray:
    """Each image's recorded response at its site (mean over repetitions; NaN where the
    dataset lacks the image)."""
    from ..data import load_dataset

    ds = load_dataset(responses)
    if ds.responses is None:
        raise ValueError(f"{responses} holds no responses.npy (a stimulus set): nothing to score")
    ids = ds.stimuli["stimulus_id"].astype(str).tolist()
    row = {s: i for i, s in enumerate(ids)}
    col = {n: j for j, n in enumerate(ds.neuroids["neuroid_id"].astype(str))}
    missing_sites = sorted(set(stim["site"].astype(str)) - set(col))
    if missing_sites:
        raise ValueError(f"site(s) {missing_sites} are not neuroids of {responses} (its "
                         "neuroid_id must name the sites)")
    shown = stim["stimulus_id"].astype(str).isin(row)
    if not shown.any():
        raise ValueError(f"no stimulus of the control folder is in {responses} (match by "
                         "stimulus_id: reuse the folder's stimuli.parquet)")
    if not shown.all():
        log.warning("%d of %d control images have no response in %s; scored without them",
                    int((~shown).sum()), len(stim), responses)
    Y = ds.mean_responses()
    out = np.full(len(stim), np.nan)
    for k, (sid, site) in enumerate(zip(stim["stimulus_id"].astype(str), stim["site"].astype(str))):
        if sid in row:
            out[k] = Y[row[sid], col[site]]
    return out


def _oracle_predict(oracle: str, folder: str, images: list[str], sites: list[str],
                    device: str | None = None, batch_size: int = 16) -> np.ndarray:
    """The oracle's prediction for each image at its site (``sites[i]`` for ``images[i]``),
    the image presented on the oracle's canvas as a scan would present it."""
    from ..data.images import decode_image, present, read_images
    from ..scan.encoders import load_encoder
    from .seeds import canvas_geometry
    from .site_model import SiteModel, pick_device
    from .synth import from_uint8

    enc = load_encoder(oracle)
    names = list(dict.fromkeys(sites))
    enc.site_index(names)  # names sites the oracle lacks
    dev = pick_device(device)
    model = SiteModel(enc, names, device=dev)
    geo = canvas_geometry(enc.meta["preprocessing"])
    uris = [join(normalize_uri(folder), p) for p in images]
    out = np.empty(len(uris))
    cols = [names.index(s) for s in sites]
    for s in range(0, len(uris), batch_size):
        blobs = read_images(uris[s:s + batch_size])
        u8 = np.stack([present(decode_image(b, u), geo)
                       for b, u in zip(blobs, uris[s:s + batch_size])])
        pred = model.predict(from_uint8(u8, dev))
        out[s:s + len(u8)] = pred[np.arange(len(u8)), cols[s:s + batch_size]]
    return out


def oracle_responses(stim: pd.DataFrame, folder: str, oracle: str, device: str | None = None,
                     batch_size: int = 16, engine: str = "local", address: str | None = None,
                     progress: bool = False) -> np.ndarray:
    """Each image's response at its site predicted by the encoder ``oracle``. ``engine``
    "ray": one Ray task per site (on a GPU when the cluster has one), each loading the
    oracle once for all that site's sweeps; a task per (site, seed) would load the
    network once per 11 images, which costs more than predicting them."""
    if engine not in ("ray", "local"):
        raise ValueError(f"engine must be 'ray' or 'local', got {engine!r}")
    images = stim["image"].astype(str).tolist()
    sites = stim["site"].astype(str).tolist()
    if engine == "local" or not images:
        return _oracle_predict(oracle, folder, images, sites, device, batch_size)
    from ..core.progress import Progress
    from ..core.raysetup import remote_task
    from ..scan.encoders import load_encoder

    load_encoder(oracle).site_index(list(dict.fromkeys(sites)))  # fail here, not in a task
    ray, task = remote_task(_oracle_predict, address)
    rows = pd.Series(range(len(sites))).groupby(pd.Series(sites), sort=False)
    pending = {}
    for site, idx in rows:
        idx = idx.to_numpy()
        ref = task.remote(oracle, normalize_uri(folder), [images[i] for i in idx],
                          [site] * idx.size, device, batch_size)
        pending[ref] = idx
    out = np.empty(len(images))
    with Progress(len(pending), "oracle", unit="site", enabled=progress) as bar:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            out[pending.pop(done[0])] = ray.get(done[0])  # a failed task raises here
            bar.update(1)
    return out


def _sweep_scores(acc: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per accentuation sweep the control r, and per site its mean and SD over seeds."""
    rows = []
    for (site, seed), g in acc.groupby(["site", "seed_id"], sort=True):
        resp = g["response"].to_numpy(float)
        rows.append({"site": site, "seed_id": seed, "n_images": int(np.isfinite(resp).sum()),
                     "control_r": _pearson(g["target"].to_numpy(float), resp),
                     "model": g["model"].iloc[0], "layer": g["layer"].iloc[0]})
    sweeps = pd.DataFrame(rows, columns=["site", "seed_id", "n_images", "control_r", "model",
                                         "layer"])
    if not len(sweeps):
        return sweeps, pd.DataFrame(columns=["site", "mean_r", "sd_r", "n_seeds"])
    sites = sweeps.groupby("site")["control_r"].agg(mean_r="mean", sd_r="std", n_seeds="count")
    return sweeps, sites.reset_index()


def _pairs(con: pd.DataFrame) -> pd.DataFrame:
    """Per controversial (site, seed): the response to A's image minus B's."""
    rows = []
    for (site, seed), g in con.groupby(["site", "seed_id"], sort=True):
        a = g.loc[g["condition"] == "a_high", "response"]
        b = g.loc[g["condition"] == "b_high", "response"]
        if a.empty or b.empty or not (np.isfinite(a.iloc[0]) and np.isfinite(b.iloc[0])):
            continue
        d = float(a.iloc[0] - b.iloc[0])
        rows.append({"site": site, "seed_id": seed, "response_a_high": float(a.iloc[0]),
                     "response_b_high": float(b.iloc[0]), "difference": d,
                     "follows": "A" if d > 0 else ("B" if d < 0 else "neither"),
                     "model_a": g["model"].iloc[0], "model_b": g["model_b"].iloc[0]})
    return pd.DataFrame(rows, columns=["site", "seed_id", "response_a_high", "response_b_high",
                                       "difference", "follows", "model_a", "model_b"])


def _sd(x: pd.Series) -> float:
    return float(x.std(ddof=1)) if len(x) > 1 else float("nan")


def control_scores(stim: pd.DataFrame, resp: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                  pd.DataFrame, dict]:
    """(per sweep, per site, per controversial pair, summary) from the folder's stimuli
    and one response per image (see the module doc)."""
    df = stim.assign(response=np.asarray(resp, dtype=np.float64))
    sweeps, sites = _sweep_scores(df[df["kind"] == "accentuate"])
    con = df[df["kind"] == "controversial"]
    pairs = _pairs(con)
    summary: dict = {"n_images_scored": int(np.isfinite(df["response"]).sum())}
    if len(sweeps):
        summary["control"] = {
            "mean_r_over_sites": float(sites["mean_r"].mean()),
            "sd_r_over_sites": _sd(sites["mean_r"]),
            "mean_r_over_sweeps": float(sweeps["control_r"].mean()),
            "sd_r_over_sweeps": _sd(sweeps["control_r"]),
            "n_sites": int(len(sites)), "n_sweeps": int(len(sweeps))}
    if len(con):
        by_site = {}
        for site, g in con.groupby("site", sort=True):
            p = pairs[pairs["site"] == site]
            r = g["response"].to_numpy(float)
            by_site[str(site)] = {
                "fraction_follows_a": float((p["follows"] == "A").mean()) if len(p) else float("nan"),
                "r_with_a": _pearson(g["pred_a"].to_numpy(float), r),
                "r_with_b": _pearson(g["pred_b"].to_numpy(float), r), "n_pairs": int(len(p))}
        frac = float((pairs["follows"] == "A").mean()) if len(pairs) else float("nan")
        summary["controversial"] = {
            "fraction_follows_a": frac, "n_pairs": int(len(pairs)),
            "follows": "A" if frac > 0.5 else ("B" if frac < 0.5 else "neither"),
            "model_a": con["model"].iloc[0], "model_b": con["model_b"].iloc[0], "sites": by_site}
    return sweeps, sites, pairs, summary


def run_score(stimuli: str, responses: str | None = None, oracle: str | None = None,
              out: str | None = None, device: str | None = None, engine: str = "ray",
              address: str | None = None, progress: bool = False) -> ScoreResult:
    """Score a control folder against recorded responses or an oracle; write the tables.
    ``engine`` and ``address``: where an oracle's predictions run (see
    :func:`oracle_responses`); recorded responses need no model."""
    from ..store import ResultStore

    if (responses is None) == (oracle is None):
        raise ValueError("give either --responses DATASET or --oracle ENCODER_URI")
    folder = normalize_uri(stimuli)
    stim = read_stimuli(folder)
    if responses is not None:
        resp, source = recorded_responses(stim, normalize_uri(responses)), normalize_uri(responses)
    else:
        resp = oracle_responses(stim, folder, oracle, device, engine=engine, address=address,
                                progress=progress)
        source = normalize_uri(oracle)
    sweeps, sites, pairs, summary = control_scores(stim, resp)
    name = posixpath.basename(source.rstrip("/"))
    if oracle is not None:   # an encoder folder is named by its region: say which model it is
        from ..scan.encoders import load_encoder

        m = load_encoder(oracle).meta
        name = f"{m['model_key']}-{m['layer']}-{m['region']}"
    label = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")
    out = normalize_uri(out) if out else join(folder, "control",
                                              f"score-{'oracle' if oracle else 'responses'}-{label}")
    summary.update(stimuli=folder, responses=responses, oracle=oracle)
    store = ResultStore(out)
    for name, table in (("sweeps", sweeps), ("sites", sites), ("controversial", pairs)):
        buf = io.StringIO()
        table.to_csv(buf, index=False)
        store.put_bytes(f"{name}.csv", buf.getvalue().encode())
    store.put_bytes("summary.json", json.dumps(summary, indent=2, default=str).encode())
    return ScoreResult(out, sweeps, sites, pairs, summary)
