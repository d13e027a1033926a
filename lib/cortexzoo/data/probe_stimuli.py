"""Stimuli of the twin probes (paper 004 A.3-A.4, SCIENCE.md section 9), numpy only.

Every generator is seeded (same seed, same stimuli), renders grayscale frames at any
size ``(h, w)`` with intensities in ``[0, 1]`` (the range of a twin's normalized input
frames) and returns float32 arrays.

Conventions. Pixel coordinates are centred on the frame: ``x = col - (w - 1) / 2``,
``y = row - (h - 1) / 2`` (rows grow downwards). An orientation or motion direction
``theta`` is the direction of the vector ``(cos theta, sin theta)`` in ``(x, y)``:
a grating of orientation ``theta`` varies along that vector (its bars are
perpendicular to it), ``theta = 0`` moves dots to the right.

* :func:`grating`: ``I(x, y) = L (1 + C sin(2 pi f (x cos theta + y sin theta) + phi))``
  clipped to ``[0, 1]``: mean luminance ``L``, Michelson contrast ``C`` (before
  clipping), spatial frequency ``f`` in cycles per pixel, phase ``phi``.
* :func:`orientation_stimuli`: gratings in ``n_classes`` orientation bins over
  ``[0, pi)`` (orientation uniform within its bin, labels interleaved so that every
  prefix of the set is as balanced as it can be), nuisances drawn per image: spatial
  frequency (log-uniform), contrast, mean luminance, phase (uniform on ``[0, 2 pi)``),
  Gaussian blur and additive Gaussian pixel noise (blur first, then noise, then clip).
* :func:`contrast_detection_clips`: clips of dynamic Gaussian noise around a mean
  luminance; on target trials a Gabor in a fixed patch is flashed on one of the last
  ``target_frames`` frames (Glickfeld et al. 2013).
* :func:`rdk_clips`: random-dot kinematograms with a coherence, a direction and a dot
  lifetime (Stirman et al. 2016); :func:`chunk_clips` cuts them into 5-frame chunks.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["grating", "gaussian_blur", "orientation_stimuli", "gabor", "contrast_detection_clips",
           "rdk_clips", "chunk_clips", "StimulusError"]


class StimulusError(ValueError):
    """A bad stimulus parameter (the message names it)."""


def _coords(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    if int(h) < 2 or int(w) < 2:
        raise StimulusError(f"frame size must be at least 2x2, got {h}x{w}")
    y = np.arange(int(h), dtype=np.float64) - (int(h) - 1) / 2.0
    x = np.arange(int(w), dtype=np.float64) - (int(w) - 1) / 2.0
    return y[:, None], x[None, :]


def _vec(v: Any, n: int | None = None) -> np.ndarray:
    a = np.atleast_1d(np.asarray(v, dtype=np.float64))
    if n is not None and a.size == 1:
        a = np.full(n, float(a[0]))
    return a


def _range(r: Sequence[float], name: str, lo: float = -np.inf,
           hi: float = np.inf) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in r)
    except (TypeError, ValueError):
        raise StimulusError(f"{name} must be a (low, high) pair, got {r!r}") from None
    if not (lo <= a <= b <= hi):
        raise StimulusError(f"{name} must satisfy {lo} <= low <= high <= {hi}, got {r!r}")
    return a, b


def grating(h: int, w: int, theta: Any, sf: Any, phase: Any, contrast: Any = 1.0,
            mean: Any = 0.5) -> np.ndarray:
    """Full-field sinusoidal gratings ``[n, h, w]`` (parameters broadcast to length n)."""
    y, x = _coords(h, w)
    theta, sf, phase, contrast, mean = np.broadcast_arrays(
        _vec(theta), _vec(sf), _vec(phase), _vec(contrast), _vec(mean))
    u = np.cos(theta)[:, None, None] * x[None] + np.sin(theta)[:, None, None] * y[None]
    arg = 2 * np.pi * sf[:, None, None] * u + phase[:, None, None]
    img = mean[:, None, None] * (1.0 + contrast[:, None, None] * np.sin(arg))
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def _blur_matrix(n: int, sigma: float) -> np.ndarray:
    """[n, n] Gaussian smoothing with reflected edges (rows sum to 1)."""
    if sigma <= 0:
        return np.eye(n)
    rad = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-rad, rad + 1) / sigma) ** 2)
    k /= k.sum()
    m = np.zeros((n, n))
    for i in range(n):
        for j, kv in zip(range(i - rad, i + rad + 1), k):
            jj = j
            while jj < 0 or jj >= n:  # reflect (numpy 'symmetric'): -1 -> 0, n -> n-1
                jj = -jj - 1 if jj < 0 else 2 * n - jj - 1
            m[i, jj] += kv
    return m


def gaussian_blur(images: np.ndarray, sigma: Any) -> np.ndarray:
    """Blur ``images`` [n, h, w] with a Gaussian of standard deviation ``sigma`` pixels
    (a scalar or one per image; 0 leaves an image as it is). Separable, edges reflected."""
    imgs = np.asarray(images, dtype=np.float64)
    if imgs.ndim != 3:
        raise StimulusError(f"images must be [n, h, w], got {list(imgs.shape)}")
    n, h, w = imgs.shape
    s = _vec(sigma, n)
    if s.shape != (n,) or (s < 0).any() or not np.isfinite(s).all():
        raise StimulusError(f"sigma must be >= 0, a scalar or one per image ({n})")
    out = np.empty_like(imgs)
    for val in np.unique(s):
        idx = np.flatnonzero(s == val)
        if val <= 0:
            out[idx] = imgs[idx]
            continue
        out[idx] = _blur_matrix(h, val) @ imgs[idx] @ _blur_matrix(w, val).T
    return out.astype(np.float32)


def _uniform(rng: np.random.Generator, r: tuple[float, float], n: int) -> np.ndarray:
    return rng.uniform(r[0], r[1], n) if r[1] > r[0] else np.full(n, r[0])


def _log_uniform(rng: np.random.Generator, r: tuple[float, float], n: int) -> np.ndarray:
    return np.exp(_uniform(rng, (np.log(r[0]), np.log(r[1])), n))


def orientation_stimuli(n: int, h: int, w: int, *, seed: Any, n_classes: int = 8,
                        sf: Sequence[float] = (0.04, 0.12),
                        contrast: Sequence[float] = (0.3, 1.0),
                        noise: Sequence[float] = (0.0, 0.05),
                        blur: Sequence[float] = (0.0, 1.0),
                        mean: Sequence[float] = (0.4, 0.6)) -> dict[str, np.ndarray]:
    """``n`` noisy gratings for the orientation probe and their labels.

    Label ``k`` (``k = i mod n_classes`` for image ``i``) is the orientation bin
    ``[k pi / K, (k + 1) pi / K)``. Nuisance ranges are ``(low, high)`` pairs: ``sf``
    (cycles/pixel, log-uniform), ``contrast``, ``noise`` (pixel noise SD), ``blur``
    (Gaussian SD in pixels), ``mean`` (luminance). Returns ``images`` [n, h, w],
    ``labels`` [n] and every drawn parameter [n].
    """
    if int(n) < 1 or int(n_classes) < 2:
        raise StimulusError(f"need n >= 1 and n_classes >= 2, got {n}, {n_classes}")
    sf_r = _range(sf, "sf", 1e-6, 0.5)
    c_r = _range(contrast, "contrast", 0.0, 10.0)
    nz_r = _range(noise, "noise", 0.0)
    bl_r = _range(blur, "blur", 0.0)
    mn_r = _range(mean, "mean", 0.0, 1.0)
    rng = np.random.default_rng(seed)
    labels = np.arange(int(n)) % int(n_classes)
    theta = (labels + rng.uniform(0, 1, n)) * np.pi / n_classes
    p = {"theta": theta, "sf": _log_uniform(rng, sf_r, n), "phase": rng.uniform(0, 2 * np.pi, n),
         "contrast": _uniform(rng, c_r, n), "mean": _uniform(rng, mn_r, n),
         "blur": _uniform(rng, bl_r, n), "noise": _uniform(rng, nz_r, n)}
    img = grating(h, w, p["theta"], p["sf"], p["phase"], p["contrast"], p["mean"])
    img = gaussian_blur(img, p["blur"])
    img = img + p["noise"][:, None, None] * rng.standard_normal(img.shape)
    return {"images": np.clip(img, 0.0, 1.0).astype(np.float32), "labels": labels, **p}


def gabor(h: int, w: int, center: Sequence[float], sigma: float, sf: Any, theta: Any,
          phase: Any) -> np.ndarray:
    """Gabor patches ``[n, h, w]`` (peak 1): a Gaussian envelope of SD ``sigma`` pixels
    at ``center`` (row, col in pixels) times ``cos(2 pi sf u + phase)``, ``u`` the
    coordinate along ``theta`` from the centre."""
    rows = np.arange(int(h), dtype=np.float64)[:, None]
    cols = np.arange(int(w), dtype=np.float64)[None, :]
    dy, dx = rows - float(center[0]), cols - float(center[1])
    env = np.exp(-(dx ** 2 + dy ** 2) / (2 * float(sigma) ** 2))
    sf, theta, phase = np.broadcast_arrays(_vec(sf), _vec(theta), _vec(phase))
    u = np.cos(theta)[:, None, None] * dx[None] + np.sin(theta)[:, None, None] * dy[None]
    return env[None] * np.cos(2 * np.pi * sf[:, None, None] * u + phase[:, None, None])


def contrast_detection_clips(present: Any, contrast: Any, h: int, w: int, *, seed: Any,
                             clip_len: int = 5, target_frames: int = 3,
                             patch_center: Sequence[float] = (0.5, 0.5),
                             patch_sigma: float = 0.12,
                             sf: Sequence[float] = (0.06, 0.12),
                             noise: Sequence[float] = (0.05, 0.15),
                             blur: Sequence[float] = (0.0, 1.0), mean: float = 0.5,
                             orientation: float | None = 0.0) -> dict[str, np.ndarray]:
    """Clips ``[n, clip_len, h, w]`` for the dynamic contrast-detection probe.

    Every frame is ``mean`` plus fresh Gaussian pixel noise (SD drawn per clip from
    ``noise``). Where ``present[i]``, a Gabor of Michelson contrast ``contrast[i]``
    (amplitude ``mean * contrast``; ``contrast`` 0 makes a target trial look blank) is
    added on one frame drawn from the last ``target_frames``: a fixed patch centred at
    ``patch_center`` (fractions of height and width), envelope SD ``patch_sigma`` times
    the smaller side, carrier SF drawn per clip from ``sf`` (log-uniform), random
    phase, orientation ``orientation`` (None: random per clip), blurred by a Gaussian
    of SD drawn from ``blur``. Returns ``clips``, ``target_frame`` (-1 on blank
    trials) and the drawn nuisances.
    """
    present = np.asarray(present, dtype=bool).ravel()
    n = present.size
    contrast = _vec(contrast, n)
    if contrast.shape != (n,) or (contrast < 0).any():
        raise StimulusError(f"contrast must be >= 0, a scalar or one per clip ({n})")
    if not 1 <= int(target_frames) <= int(clip_len):
        raise StimulusError(f"target_frames must be in 1..clip_len ({clip_len}), "
                            f"got {target_frames}")
    sf_r, nz_r, bl_r = _range(sf, "sf", 1e-6, 0.5), _range(noise, "noise", 0.0), \
        _range(blur, "blur", 0.0)
    rng = np.random.default_rng(seed)
    p = {"sf": _log_uniform(rng, sf_r, n), "noise": _uniform(rng, nz_r, n),
         "blur": _uniform(rng, bl_r, n), "phase": rng.uniform(0, 2 * np.pi, n),
         "theta": (rng.uniform(0, np.pi, n) if orientation is None
                   else np.full(n, float(orientation)))}
    frame = clip_len - int(target_frames) + rng.integers(0, int(target_frames), n)
    frame = np.where(present, frame, -1)
    center = (patch_center[0] * (h - 1), patch_center[1] * (w - 1))
    target = gabor(h, w, center, patch_sigma * min(h, w), p["sf"], p["theta"], p["phase"])
    target = gaussian_blur(target, p["blur"]) * (mean * contrast * present)[:, None, None]
    clips = mean + p["noise"][:, None, None, None] * rng.standard_normal((n, clip_len, h, w))
    idx = np.flatnonzero(present)
    clips[idx, frame[idx]] += target[idx]
    return {"clips": np.clip(clips, 0.0, 1.0).astype(np.float32), "target_frame": frame,
            "contrast": contrast * present, **p}


def rdk_clips(coherence: Any, direction: Any, h: int, w: int, *, seed: Any, n_frames: int = 20,
              density: float = 0.05, lifetime: int = 6, speed: float = 1.0,
              dot_size: int = 1, dot_value: float = 1.0, background: float = 0.0) -> np.ndarray:
    """Random-dot kinematograms ``[n, n_frames, h, w]``.

    ``round(density h w)`` dots of ``dot_size`` x ``dot_size`` pixels start at random
    positions with random ages. Between frames, a random subset of exactly
    ``round(coherence[i] * n_dots)`` dots (drawn anew every frame) steps ``speed``
    pixels in ``direction[i]`` (radians), every other dot in a direction of its own
    drawn uniformly; positions wrap around the frame. A dot that has lived
    ``lifetime`` frames is replotted at a random position with age 0.
    """
    coh = np.asarray(coherence, dtype=np.float64).ravel()
    n = coh.size
    dirs = _vec(direction, n)
    if dirs.shape != (n,) or ((coh < 0) | (coh > 1)).any():
        raise StimulusError(f"coherence must be in [0, 1] and direction one per clip ({n})")
    if int(lifetime) < 1 or int(n_frames) < 1 or speed < 0 or int(dot_size) < 1:
        raise StimulusError(f"need lifetime >= 1, n_frames >= 1, speed >= 0, dot_size >= 1; "
                            f"got {lifetime}, {n_frames}, {speed}, {dot_size}")
    if not 0 < density <= 1:
        raise StimulusError(f"density must be in (0, 1], got {density}")
    rng = np.random.default_rng(seed)
    nd = max(1, int(round(density * h * w)))
    size = np.array([h, w], dtype=np.float64)
    pos = rng.uniform(0, 1, (n, nd, 2)) * size
    age = rng.integers(0, int(lifetime), (n, nd))
    k_signal = np.round(coh * nd).astype(np.int64)
    out = np.full((n, int(n_frames), h, w), background, np.float32)
    trial = np.arange(n)[:, None]
    for t in range(int(n_frames)):
        iy = np.floor(pos[..., 0]).astype(np.int64)
        ix = np.floor(pos[..., 1]).astype(np.int64)
        for oy in range(int(dot_size)):
            for ox in range(int(dot_size)):
                out[trial, t, (iy + oy) % h, (ix + ox) % w] = dot_value
        rank = np.argsort(np.argsort(rng.random((n, nd)), axis=1), axis=1)
        signal = rank < k_signal[:, None]
        ang = np.where(signal, dirs[:, None], rng.uniform(0, 2 * np.pi, (n, nd)))
        pos = pos + speed * np.stack([np.sin(ang), np.cos(ang)], axis=-1)
        age += 1
        dead = age >= int(lifetime)
        pos[dead] = rng.uniform(0, 1, (int(dead.sum()), 2)) * size
        age[dead] = 0
        pos = np.mod(pos, size)
    return out


def chunk_clips(clips: np.ndarray, chunk: int = 5) -> np.ndarray:
    """``[n, T, h, w]`` -> ``[n, T // chunk, chunk, h, w]``, non-overlapping; when ``T``
    is not a multiple of ``chunk`` the first ``T mod chunk`` frames are left out, so
    the last chunk always ends on the clip's last frame."""
    c = np.asarray(clips)
    if c.ndim != 4 or c.shape[1] < chunk or chunk < 1:
        raise StimulusError(f"clips must be [n, T >= {chunk}, h, w], got {list(c.shape)}")
    k = c.shape[1] // chunk
    return c[:, c.shape[1] - k * chunk:].reshape(c.shape[0], k, chunk, *c.shape[2:])
