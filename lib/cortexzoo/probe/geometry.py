"""Population geometry of a twin's hidden activity (paper 004 section 2.3, A.4).

:func:`eigenspectrum_task`: ``n_clips`` clips of a fixed reference session (drawn once
from its ``splits``, the same clips for every twin), their final GRU states and, as a
diagnostic, the last frame's encoder output; each standardized, PCA'd
(:func:`cortexzoo.mapping.eigenspectrum.eigenspectrum`) and fitted with a power law over
the rank window. ``alpha_gru`` is the cross-model geometry column.

:func:`neural_reference`: where a session's ``session.json`` lists ``repeats`` (two or
more ``[start, stop)`` frame intervals of equal length showing the same movie), the
cross-validated PCA spectrum (Stringer et al. 2019) of the recorded responses over the
first two repeats: the biological reference the twins' exponents are compared with.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from ..mapping.eigenspectrum import cvpca, eigenspectrum, powerlaw_fit
from .config import ProbeConfig
from .extract import FeatureExtractor
from .tasks import FamilyResult

__all__ = ["reference_session", "reference_clips", "eigenspectrum_task", "session_repeats",
           "neural_reference"]


def reference_session(coll: Any, cfg: ProbeConfig):
    """The session named by ``eigenspectrum.reference_session`` (default: the first)."""
    name = cfg.eigenspectrum.reference_session
    if name is None:
        return coll.sessions[0]
    for s in coll.sessions:
        if name in (s.name, s.session_id):
            return s
    raise ValueError(f"eigenspectrum.reference_session: no session {name!r} in {coll.uri}; "
                     f"sessions: {[s.name for s in coll.sessions]}")


def reference_clips(session: Any, cfg: ProbeConfig, clip_len: int) -> tuple[Any, np.ndarray]:
    """(ClipDataset over the reference splits, the sampled clip indices, sorted)."""
    from ..data.sessions import ClipDataset

    e = cfg.eigenspectrum
    ds = ClipDataset([session], e.splits[0], clip_len)
    if len(e.splits) > 1:
        # one dataset over several splits: the same session, its target bins of every split
        bins = np.sort(np.concatenate([session.targets(sp, clip_len) for sp in e.splits]))
        ds.target_bins, ds.session_idx = bins, np.zeros(len(bins), np.int64)
    if len(ds) < 3:
        raise ValueError(f"session {session.name!r} has only {len(ds)} clips of {clip_len} "
                         f"frames in {e.splits}; the eigenspectrum needs more")
    rng = np.random.default_rng([int(cfg.seed), 4242])
    n = min(e.n_clips, len(ds))
    return ds, np.sort(rng.choice(len(ds), n, replace=False))


def _spectrum_rows(lam: np.ndarray, space: str) -> pd.DataFrame:
    return pd.DataFrame({"space": space, "rank": np.arange(1, len(lam) + 1), "eigenvalue": lam})


def eigenspectrum_task(fx: FeatureExtractor, coll: Any, cfg: ProbeConfig,
                       clip_len: int = 5) -> FamilyResult:
    e = cfg.eigenspectrum
    session = reference_session(coll, cfg)
    if tuple(session.frame_shape) != tuple(fx.hw):
        raise ValueError(f"session {session.name!r} has {list(session.frame_shape)} frames but "
                         f"the twin takes {list(fx.hw)}")
    timings = {"stimuli_s": 0.0, "forward_s": 0.0}
    ds, idx = reference_clips(session, cfg, clip_len)
    H, D = [], []
    for i in range(0, len(idx), fx.batch_size):
        t0 = time.perf_counter()
        x, _ = ds.get_batch(idx[i:i + fx.batch_size])
        t1 = time.perf_counter()
        h, d = fx.gru_and_last_frame(x[:, :, 0].numpy())
        timings["stimuli_s"] += t1 - t0
        timings["forward_s"] += time.perf_counter() - t1
        H.append(h)
        D.append(d)
    t2 = time.perf_counter()
    res = FamilyResult(timings=timings)
    tables, fits = [], {}
    for space, feats in (("gru", np.concatenate(H)), ("encoder", np.concatenate(D))):
        lam = eigenspectrum(feats, e.n_components)
        fit = powerlaw_fit(lam, tuple(e.ranks))
        fits[space] = fit
        tables.append(_spectrum_rows(lam, space).assign(alpha=fit.alpha,
                                                        intercept=fit.intercept))
        for metric, value in ((f"alpha_{space}", fit.alpha),
                              (f"n_components_{space}", float(len(lam))),
                              (f"ranks_used_{space}", float(fit.n_used))):
            res.rows.append({"metric": metric, "value": value, "n_stimuli": len(idx),
                             "n_neuroids": int(feats.shape[1]), "layer": space,
                             "split": "+".join(e.splits)})
    timings["pca_s"] = time.perf_counter() - t2
    res.tables["eigenspectrum"] = pd.concat(tables, ignore_index=True).assign(
        session=session.name, rank_lo=e.ranks[0], rank_hi=e.ranks[1])
    res.info = {"session": session.name, "n_clips": int(len(idx))}
    return res


def session_repeats(session: Any) -> list[tuple[int, int]] | None:
    """The ``repeats`` intervals of a session's metadata (validated), or None."""
    reps = session.meta.get("repeats")
    if reps is None:
        return None
    where = f"session {session.name!r}: session.json 'repeats'"
    if not isinstance(reps, list) or len(reps) < 2:
        raise ValueError(f"{where} must list at least 2 [start, stop] intervals")
    out = []
    for r in reps:
        if (not isinstance(r, (list, tuple)) or len(r) != 2
                or not 0 <= int(r[0]) < int(r[1]) <= session.n_frames):
            raise ValueError(f"{where}: interval {r!r} is not inside [0, {session.n_frames})")
        out.append((int(r[0]), int(r[1])))
    if len({b - a for a, b in out}) != 1:
        raise ValueError(f"{where}: intervals {out} differ in length")
    return out


def neural_reference(coll: Any, cfg: ProbeConfig) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """cvPCA spectra of every session with repeats: (spectra table, score rows)."""
    e = cfg.eigenspectrum
    tables, rows = [], []
    for s in coll.sessions:
        reps = session_repeats(s)
        if reps is None:
            continue
        (a0, b0), (a1, b1) = reps[:2]
        r1 = s.responses[a0:b0].astype(np.float64)
        r2 = s.responses[a1:b1].astype(np.float64)
        lam = cvpca(r1, r2, n_components=e.n_components, n_shuffles=e.cvpca_shuffles,
                    seed=int(cfg.seed))
        fit = powerlaw_fit(lam, tuple(e.ranks))
        tables.append(_spectrum_rows(lam, "neural_cvpca").assign(
            alpha=fit.alpha, intercept=fit.intercept, session=s.name, animal=s.animal_id,
            rank_lo=e.ranks[0], rank_hi=e.ranks[1]))
        rows.append({"metric": "alpha_cvpca", "value": fit.alpha, "n_stimuli": b0 - a0,
                     "n_neuroids": s.n_neurons, "layer": "responses", "split": "repeats",
                     "session": s.name, "animal": s.animal_id})
    return (pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()), rows
