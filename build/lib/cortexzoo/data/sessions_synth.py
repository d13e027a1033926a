"""Synthetic freely-moving sessions with V1-like neurons of known tuning.

The movie is a 1/f ("pink") texture seen through a window that drifts with a smooth
random-walk velocity and jumps now and then (head/eye movements), with slow contrast
changes, optionally overlaid with a drifting grating. Each neuron is a linear-nonlinear
unit: an oriented Gabor filter (simple cells) or a quadrature pair (complex cells)
applied to the last ``n_lags`` frames through a temporal kernel, an exponential
nonlinearity, and Poisson spiking. The target at bin ``t`` depends on frames
``t - n_lags .. t - 1`` only, i.e. exactly what a 5-frame clip shows.

The ground-truth rates are stored (``rates.npy``) and so is the noise ceiling: the
correlation between the true rate and the Poisson responses (per neuron, chunked and
overall), the best any model can achieve on these data.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..mapping.metrics import chunked_pearson, overall_pearson
from .sessions import make_segments, write_session, write_sessions_index

__all__ = ["make_movie", "make_neurons", "neuron_rates", "make_synthetic_sessions"]


# ------------------------------------------------------------------------------ movie


def _pink_texture(rng: np.random.Generator, h: int, w: int, beta: float = 1.2) -> np.ndarray:
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    f[0, 0] = 1.0
    amp = f ** (-beta)
    amp[0, 0] = 0.0
    spec = (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape)) * amp
    tex = np.fft.irfft2(spec, s=(h, w))
    return (tex - tex.mean()) / (tex.std() + 1e-12)


def make_movie(n_frames: int, height: int = 36, width: int = 64, seed: int = 0,
               grating: bool = True) -> np.ndarray:
    """A natural-like grayscale movie, uint8 [T, H, W], deterministic per ``seed``.

    A periodic 1/f texture 4x larger than the frame is viewed through a window that
    drifts (smoothly varying velocity), jumps every ~2 s on average (saccade-like)
    and changes contrast slowly; a drifting sinusoidal grating of slowly changing
    orientation is mixed in when ``grating``.
    """
    rng = np.random.default_rng(seed)
    th, tw = 4 * height, 4 * width
    tex = _pink_texture(rng, th, tw)
    vel = np.zeros(2)
    pos = rng.uniform(0, [th, tw])
    yy, xx = np.mgrid[0:height, 0:width]
    theta = rng.uniform(0, np.pi)
    phase = 0.0
    contrast = 1.0
    out = np.empty((n_frames, height, width), np.float32)
    for t in range(n_frames):
        vel = 0.9 * vel + rng.normal(0, 0.6, 2)
        pos = pos + vel
        if rng.random() < 0.025:  # a jump to a new part of the scene
            pos = rng.uniform(0, [th, tw])
        iy = (np.round(pos[0]).astype(int) + yy) % th
        ix = (np.round(pos[1]).astype(int) + xx) % tw
        frame = tex[iy, ix]
        if grating:
            theta += rng.normal(0, 0.03)
            phase += 0.5
            sf = 2 * np.pi / 12.0
            g = np.sin(sf * (np.cos(theta) * xx + np.sin(theta) * yy) - phase)
            frame = 0.7 * frame + 0.6 * g
        contrast = float(np.clip(contrast + rng.normal(0, 0.03), 0.4, 1.4))
        out[t] = contrast * frame
    out = 128 + 40 * out
    return np.clip(out, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------- neurons


def make_neurons(n: int, height: int, width: int, n_lags: int = 5, seed: int = 0,
                 complex_fraction: float = 0.4) -> dict[str, np.ndarray]:
    """Random V1-like units: Gabor pairs [n, 2, H, W], temporal kernels [n, L], kinds."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    filt = np.empty((n, 2, height, width))
    for i in range(n):
        cy, cx = rng.uniform(0.25, 0.75) * height, rng.uniform(0.2, 0.8) * width
        sigma = rng.uniform(0.08, 0.16) * height
        lam = rng.uniform(2.0, 4.0) * sigma
        th = rng.uniform(0, np.pi)
        ph = rng.uniform(0, 2 * np.pi)
        u = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)
        env = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma ** 2))
        for j, off in enumerate((0.0, np.pi / 2)):
            g = env * np.cos(2 * np.pi * u / lam + ph + off)
            g -= g.mean()
            filt[i, j] = g / (np.linalg.norm(g) + 1e-12)
    # temporal kernel over lags 1..L (index 0 = the frame just before the target bin)
    lags = np.arange(1, n_lags + 1)
    tau = rng.uniform(0.8, 2.0, n)[:, None]
    tk = lags[None] / tau * np.exp(1 - lags[None] / tau)
    tk -= rng.uniform(0.0, 0.3, n)[:, None] * (lags[None] / n_lags)  # weak biphasic tail
    tk /= np.abs(tk).sum(axis=1, keepdims=True)
    kind = (rng.random(n) < complex_fraction).astype(np.int64)  # 1 = complex cell
    base = rng.uniform(0.3, 1.5, n)
    gain = rng.uniform(0.8, 1.6, n)
    return {"filters": filt, "temporal": tk, "kind": kind, "base": base, "gain": gain}


def neuron_rates(frames: np.ndarray, neurons: dict[str, np.ndarray]) -> np.ndarray:
    """Expected spike counts per bin, float32 [T, N]; bins ``t < L`` use edge padding."""
    x = frames.astype(np.float64)
    x = (x - x.min()) / max(float(x.max() - x.min()), 1e-12) - 0.5
    filt = neurons["filters"]
    n, _, h, w = filt.shape
    proj = x.reshape(len(x), -1) @ filt.reshape(n * 2, h * w).T  # [T, 2N]
    proj = proj.reshape(len(x), n, 2)
    tk = neurons["temporal"]
    nl = tk.shape[1]
    pad = np.concatenate([np.repeat(proj[:1], nl, axis=0), proj], axis=0)
    drive = np.zeros((len(x), n, 2))
    for lag in range(1, nl + 1):  # drive[t] = sum_lag k[lag] * proj[t - lag]
        drive += tk[:, lag - 1][None, :, None] * pad[nl - lag:nl - lag + len(x)]
    simple = drive[..., 0]
    energy = np.sqrt(drive[..., 0] ** 2 + drive[..., 1] ** 2)
    z = np.where(neurons["kind"][None] == 1, energy, simple)
    z = (z - z.mean(axis=0)) / (z.std(axis=0) + 1e-12)
    # a soft, capped exponential keeps rare very high rates from dominating
    z = np.clip(z, -4.0, 3.0)
    return (neurons["base"][None] * np.exp(0.6 * neurons["gain"][None] * z)).astype(np.float32)


def make_synthetic_sessions(root: str, n_animals: int = 3,
                            n_neurons: Sequence[int] | int = (12, 16, 20),
                            n_frames: int = 2000, height: int = 36, width: int = 64,
                            seed: int = 0, n_segments: int = 10, train_fraction: float = 0.8,
                            test_segments: Sequence[int] = (4, 9), clip_len: int = 5,
                            chunk: int = 100, rate_scale: float = 1.0) -> dict[str, Any]:
    """Write ``n_animals`` synthetic sessions (one per animal) and the index under ``root``.

    Returns the index document, which (like each ``session.json``) records the noise
    ceiling on the test split: the chunked per-neuron and overall correlation between
    the ground-truth rate and the Poisson responses at the test targets.
    ``rate_scale`` multiplies all rates (higher rates, less Poisson noise, higher
    ceiling); the default gives about 1 spike per bin.
    """
    counts = [n_neurons] * n_animals if isinstance(n_neurons, int) else list(n_neurons)
    if len(counts) != n_animals:
        raise ValueError(f"n_neurons has {len(counts)} entries for {n_animals} animals")
    names, ceilings = [], {}
    for a in range(n_animals):
        rng = np.random.default_rng([seed, a])
        frames = make_movie(n_frames, height, width, seed=int(rng.integers(1 << 31)))
        neurons = make_neurons(counts[a], height, width, clip_len, seed=int(rng.integers(1 << 31)))
        rates = neuron_rates(frames, neurons) * np.float32(rate_scale)
        resp = rng.poisson(rates).astype(np.float32)
        segs = make_segments(n_frames, n_segments, train_fraction, test_segments)
        test_t = np.concatenate([np.arange(iv["start"] + clip_len, iv["stop"])
                                 for iv in segs["intervals"] if iv["split"] == "test"])
        ceil = {"chunked_pearson_r": float(np.nanmean(chunked_pearson(rates[test_t],
                                                                      resp[test_t], chunk))),
                "overall_pearson_r": overall_pearson(rates[test_t], resp[test_t]),
                "split": "test", "chunk": chunk}
        name = f"session{a:02d}"
        animal = f"mouse{a:02d}"
        write_session(root, name, frames, resp, animal_id=animal, segments=segs, rates=rates,
                      extra={"synthetic": True, "seed": seed, "noise_ceiling": ceil,
                             "mean_rate": float(rates.mean())})
        names.append(name)
        ceilings[animal] = ceil
    return {"uri": write_sessions_index(root, names, synthetic=True, noise_ceiling=ceilings),
            "sessions": names, "noise_ceiling": ceilings}
