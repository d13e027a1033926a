"""Latent-unit tuning of one frozen twin's encoder (paper 004 A.4).

Every encoder output dimension is a unit. Full-field gratings on an orientation x
phase x SF grid (at ``tuning.contrast``) give the response tensor ``R[o, p, s, d]``;
from it (:func:`cortexzoo.mapping.tuning.grid_tuning_curves`) each unit's orientation
curve (mean over phase and SF), its preferred orientation bin, its SF curve there
(mean over phase), its preferred SF bin and its phase curve at both. Contrast curves
are measured at each unit's preferred (orientation, SF) pair over the contrast grid,
averaged over the phases; units sharing a pair share the forward passes.

The unit table holds per unit: gOSI and the vector preferred orientation, F1/F0 and
the preferred phase, the preferred SF (``pref_sf``: the DoG fit's when the fit is
usable, else the sampled one; ``pref_sf_fit``: the fit's only; ``pref_sf_sampled``),
the DoG bandwidth and R^2, the Naka-Rushton parameters and R^2, the curves' ranges and
the QC flags. The curves table holds every curve in long form. Summaries (medians over
the units that pass the matching QC) become score rows (``method="tuning"``).
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from ..data.probe_stimuli import grating
from ..mapping import tuning as T
from .config import ProbeConfig
from .extract import FeatureExtractor
from .tasks import FamilyResult

__all__ = ["tuning_grid", "tuning_task"]


def tuning_grid(cfg: ProbeConfig) -> dict[str, np.ndarray]:
    """The sampled orientations (radians, [0, pi)), phases ([0, 2 pi)), SFs (cycles/px,
    geometric) and contrasts."""
    s = cfg.tuning
    return {"thetas": np.arange(s.n_orientations) * np.pi / s.n_orientations,
            "phases": np.arange(s.n_phases) * 2 * np.pi / s.n_phases,
            "sfs": np.geomspace(s.sf_min, s.sf_max, s.n_sfs),
            "contrasts": np.asarray(s.contrasts, dtype=float)}


def _median(v: np.ndarray, ok: np.ndarray) -> float:
    v = np.asarray(v, dtype=float)[np.asarray(ok, bool)]
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else float("nan")


def tuning_task(fx: FeatureExtractor, cfg: ProbeConfig) -> FamilyResult:
    s = cfg.tuning
    g = tuning_grid(cfg)
    h, w = fx.hw
    th, ph, sf, cs = g["thetas"], g["phases"], g["sfs"], g["contrasts"]
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    O, P, F = np.meshgrid(th, ph, sf, indexing="ij")
    imgs = grating(h, w, O.ravel(), F.ravel(), P.ravel(), s.contrast, s.mean)
    t1 = time.perf_counter()
    timings["stimuli_s"] = t1 - t0
    R = fx.encoder(imgs).reshape(len(th), len(ph), len(sf), -1)
    t2 = time.perf_counter()
    timings["forward_s"] = t2 - t1
    cur = T.grid_tuning_curves(R)
    n_units = R.shape[-1]
    # contrast curves at each unit's preferred (orientation, SF) bins, averaged over phase
    pairs = np.stack([cur["pref_ori_index"], cur["pref_sf_index"]], axis=1)
    uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
    inv = np.asarray(inv).ravel()
    contrast_curves = np.zeros((n_units, len(cs)))
    for k, (io, isf) in enumerate(uniq):
        t3 = time.perf_counter()
        C, Pp = np.meshgrid(cs, ph, indexing="ij")
        im = grating(h, w, th[io], sf[isf], Pp.ravel(), C.ravel(), s.mean)
        t4 = time.perf_counter()
        r = fx.encoder(im).reshape(len(cs), len(ph), -1).mean(axis=1)  # [c, D]
        units = np.flatnonzero(inv == k)
        contrast_curves[units] = r[:, units].T
        timings["stimuli_s"] += t4 - t3
        timings["forward_s"] += time.perf_counter() - t4
    t5 = time.perf_counter()
    gosi = T.gosi(cur["orientation"], th)
    pref_ori = T.preferred_orientation(cur["orientation"], th)
    f1f0 = T.f1_f0(cur["phase"])
    pref_phase = T.preferred_phase(cur["phase"])
    dog = T.fit_dog_sf(sf, cur["sf"])
    nr = T.fit_naka_rushton(cs, contrast_curves)
    curves = {"orientation": cur["orientation"], "phase": cur["phase"], "sf": cur["sf"],
              "contrast": contrast_curves}
    qc = T.qc_flags(curves, gosi, f1f0, dog, nr, sf, s.qc_thresholds())
    timings["fits_s"] = time.perf_counter() - t5
    dog_ok = dog["success"] & (np.nan_to_num(dog["r2"], nan=-np.inf) >= s.qc_thresholds().sf_r2)
    units = pd.DataFrame({
        "unit": np.arange(n_units),
        "gosi": gosi, "pref_ori_deg": np.rad2deg(pref_ori),
        "pref_ori_bin_deg": np.rad2deg(th[cur["pref_ori_index"]]),
        "f1_f0": f1f0, "pref_phase_deg": np.rad2deg(pref_phase),
        "pref_sf": np.where(dog_ok, dog["pref_sf"], dog["pref_sf_sampled"]),
        "pref_sf_fit": dog["pref_sf"], "pref_sf_sampled": dog["pref_sf_sampled"],
        "pref_sf_index": cur["pref_sf_index"], "sf_bandwidth_octaves": dog["bandwidth_octaves"],
        "sf_r2": dog["r2"], "nr_b": nr["b"], "nr_g": nr["g"], "nr_c50": nr["c50"],
        "nr_n": nr["n"], "nr_r2": nr["r2"], "nr_c50_at_bound": nr["c50_at_bound"],
        **{f"range_{k}": np.ptp(v, axis=1) for k, v in curves.items()},
        **{k: v for k, v in qc.items()},
    })
    xs = {"orientation": np.rad2deg(th), "phase": np.rad2deg(ph), "sf": sf, "contrast": cs}
    long = pd.concat([pd.DataFrame({"unit": np.repeat(np.arange(n_units), len(xs[k])),
                                    "curve": k, "x": np.tile(xs[k], n_units),
                                    "response": np.asarray(v, dtype=float).ravel()})
                      for k, v in curves.items()], ignore_index=True)
    n_img = len(imgs) + len(uniq) * len(cs) * len(ph)
    summaries = {
        "median_gosi": _median(gosi, qc["qc_orientation"]),
        "median_f1_f0": _median(f1f0, qc["qc_phase"]),
        "median_c50": _median(nr["c50"], qc["qc_contrast"]),
        "median_pref_sf": _median(units["pref_sf"], qc["qc_sf"]),
        "median_sf_bandwidth_octaves": _median(dog["bandwidth_octaves"], qc["qc_sf"]),
        **{f"fraction_{k}": float(np.mean(v)) for k, v in qc.items()},
        # among contrast-QC units: those whose c50 sits at a bound (no saturation in range)
        "fraction_c50_at_bound": (float(np.mean(nr["c50_at_bound"][qc["qc_contrast"]]))
                                  if qc["qc_contrast"].any() else float("nan")),
    }
    res = FamilyResult(tables={"tuning": units, "tuning_curves": long}, timings=timings)
    for k, v in summaries.items():
        res.rows.append({"metric": k, "value": v, "n_stimuli": int(n_img), "n_neuroids": n_units,
                         "layer": "encoder", "split": "probe"})
    res.info = {"n_images": int(n_img), "n_contrast_pairs": int(len(uniq))}
    return res
