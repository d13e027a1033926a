"""Synthetic stimuli and neuroids with planted (known) tuning, for tests and demos.

`make_images` draws natural-like images; `plant_responses` turns any feature matrix
(e.g. a network layer's activations, or a hand-made latent) into Poisson responses of
model neuroids whose ground-truth rates are known; `planted_dataset` writes the lot as
a dataset folder.
"""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import fsspec
import numpy as np
import pandas as pd

from .dataset import DatasetError, write_dataset

__all__ = ["make_images", "plant_responses", "planted_dataset", "PLANTED_RATES"]

PLANTED_RATES = "planted_rates.npy"


# ---------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------
def _pink_field(rng: np.random.Generator, n: int, size: int, beta: np.ndarray) -> np.ndarray:
    """[n, size, size] noise with a 1/f^beta amplitude spectrum, zero mean, unit SD."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    f[0, 0] = 1.0
    amp = np.exp(-beta.reshape(n, 1, 1) * np.log(f).astype(np.float32)[None])
    amp[:, 0, 0] = 0.0
    spec = np.empty((n,) + f.shape, dtype=np.complex64)
    spec.real = rng.standard_normal(spec.shape, dtype=np.float32) * amp
    spec.imag = rng.standard_normal(spec.shape, dtype=np.float32) * amp
    field = np.fft.irfft2(spec, s=(size, size), axes=(-2, -1))
    field /= field.std(axis=(-2, -1), keepdims=True) + 1e-8
    return field


def _pink_noise(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """[n, 3, size, size] colour 1/f noise: a luminance field plus two weaker chroma fields.

    Natural images are mostly achromatic and their colour varies on coarser scales, so
    the chroma fields are drawn at half resolution (which also halves the cost).
    """
    beta = rng.uniform(0.8, 1.6, size=n).astype(np.float32)  # spectral slope varies by image
    lum = _pink_field(rng, n, size, beta)[:, None]
    half = (size + 1) // 2
    chroma = _pink_field(rng, 2 * n, half, np.repeat(beta, 2)).reshape(n, 2, half, half)
    chroma = chroma.repeat(2, axis=2).repeat(2, axis=3)[:, :, :size, :size]
    mix = rng.uniform(0.1, 0.4, size=(n, 1, 1, 1)).astype(np.float32)
    c1, c2 = mix * chroma[:, :1], mix * chroma[:, 1:]
    return np.concatenate([lum + c1, lum - 0.5 * (c1 + c2), lum + c2], axis=1)


def make_images(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """Natural-like RGB images, uint8 [n, size, size, 3], deterministic per `seed`.

    Each image is a 1/f ("pink") colour-noise background of random spectral slope,
    contrast and mean colour, with 1-4 foreground elements on top, each one of:
    a windowed sinusoidal grating (random orientation, spatial frequency, phase and
    colour axis), a soft Gaussian blob, or a hard-edged rotated ellipse, rectangle or
    bar with a random colour. Low-level statistics (edges, orientations, colours,
    spatial frequencies) therefore vary a lot from image to image, so early and late
    network layers respond differently. Cost is linear in n*size^2 (about 1 s for 500
    images at 224 px on one core). The same (n, size, seed) always gives the same images.
    """
    if n < 0 or size < 4:
        raise ValueError(f"need n >= 0 and size >= 4, got n={n}, size={size}")
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    coords = np.linspace(-1, 1, size, dtype=np.float32)  # pixel centres, both axes
    chunk = max(1, (1 << 21) // (size * size))  # bounds the memory of one batch
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        out[start:start + m] = _make_chunk(rng, m, size, coords)
    return out


def _make_chunk(rng: np.random.Generator, m: int, size: int, coords: np.ndarray) -> np.ndarray:
    bg = _pink_noise(rng, m, size)  # [m, 3, H, W]
    mean_col = rng.uniform(0.25, 0.75, size=(m, 3, 1, 1)).astype(np.float32)
    contrast = rng.uniform(0.05, 0.25, size=(m, 1, 1, 1)).astype(np.float32)
    img = mean_col + contrast * bg
    # foreground elements: parameters drawn in bulk, each drawn only inside its bounding box
    n_elem = rng.integers(1, 5, size=m)
    owner = np.repeat(np.arange(m), n_elem)
    k = owner.size
    kind = rng.integers(0, 3, size=k)  # 0 grating, 1 blob, 2 hard shape
    centre = rng.uniform(-0.7, 0.7, size=(k, 2))
    theta = rng.uniform(0, np.pi, size=k)
    radius = rng.uniform(0.15, 0.6, size=k)
    colour = rng.uniform(0.0, 1.0, size=(k, 3)).astype(np.float32)
    sf = rng.uniform(2.0, 12.0, size=k)  # grating cycles per half image width
    phase = rng.uniform(0, 2 * np.pi, size=k)
    soft = rng.random(k) < 0.5  # grating window: Gaussian or hard disk
    amp = rng.uniform(0.2, 0.5, size=k)
    blob_aspect = rng.uniform(1.0, 3.0, size=k)
    blob_opacity = rng.uniform(0.6, 1.0, size=k)
    shape = rng.integers(0, 3, size=k)  # ellipse, rectangle, bar
    shape_aspect = np.where(shape == 2, rng.uniform(4.0, 10.0, size=k), rng.uniform(1.0, 2.5, size=k))
    # half-extent of each element beyond which its alpha is < ~1%
    extent = radius * np.select([kind == 0, kind == 1], [1.5, 1.5 * np.sqrt(blob_aspect)], 1.42)
    step = coords[1] - coords[0]
    for e in range(k):
        cx, cy = centre[e]
        lo_x, hi_x = np.searchsorted(coords, [cx - extent[e], cx + extent[e] + step])
        lo_y, hi_y = np.searchsorted(coords, [cy - extent[e], cy + extent[e] + step])
        if hi_x <= lo_x or hi_y <= lo_y:
            continue
        dx = (coords[lo_x:hi_x] - cx)[None, :]
        dy = (coords[lo_y:hi_y] - cy)[:, None]
        c, s_ = np.cos(theta[e]), np.sin(theta[e])
        u = dx * c + dy * s_  # along the element's axis
        v = dy * c - dx * s_
        col = colour[e][:, None, None]
        if kind[e] == 0:
            r2 = (u * u + v * v) / radius[e] ** 2
            alpha = np.exp(-2.0 * r2) if soft[e] else (r2 < 1.0).astype(np.float32)
            axis = colour[e] - colour[e].mean() + 1.0  # mostly luminance, tinted
            axis *= np.sqrt(3) / np.linalg.norm(axis)
            layer = 0.5 + amp[e] * axis[:, None, None] * np.sin(np.pi * sf[e] * u + phase[e])
        elif kind[e] == 1:
            r2 = (u * u / blob_aspect[e] + v * v * blob_aspect[e]) / (0.5 * radius[e]) ** 2
            alpha = blob_opacity[e] * np.exp(-0.5 * r2)
            layer = col
        else:
            a_len = radius[e]
            b_len = a_len / shape_aspect[e]
            if shape[e] == 0:
                alpha = ((u / a_len) ** 2 + (v / b_len) ** 2 < 1.0).astype(np.float32)
            else:
                alpha = ((np.abs(u) < a_len) & (np.abs(v) < b_len)).astype(np.float32)
            layer = col
        patch = img[owner[e], :, lo_y:hi_y, lo_x:hi_x]
        patch += alpha.astype(np.float32)[None] * (layer - patch)
    img = np.clip(img, 0.0, 1.0)
    return (img.transpose(0, 2, 3, 1) * 255.0 + 0.5).astype(np.uint8)


# ---------------------------------------------------------------------------------------
# planted responses
# ---------------------------------------------------------------------------------------
def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _standardize(x: np.ndarray) -> np.ndarray:
    mu = x.mean(axis=0, keepdims=True)
    sd = x.std(axis=0, keepdims=True)
    # constant columns carry no signal: zero them rather than divide by zero
    return np.where(sd > 1e-12, (x - mu) / np.where(sd > 1e-12, sd, 1.0), 0.0)


def plant_responses(
    features: np.ndarray,
    n_neuroids: int = 40,
    n_reps: int = 4,
    mean_rate: float = 8.0,
    seed: int = 0,
    n_components: int | None = None,
    gain: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson responses of neuroids with planted, known tuning to `features`.

    Model, per neuroid j::

        z      = standardize(features)                 # columns: zero mean, unit SD
        u_j    = standardize(z @ w_j)                  # drive, w_j ~ N(0, I) seeded
        rate_j = mean_rate * s(u_j) / mean(s(u_j))     # s(u) = softplus(gain * u) / gain
        R[:, rep, j] ~ Poisson(rate_j)                 # independent repetitions

    With ``n_components = k`` the weights are ``w_j = A @ b_j`` with a shared random
    ``A`` [p, k]: the population's drives span a k-dimensional subspace of feature
    space (a low-dimensional population, as in real recordings); by default each
    neuroid has its own direction.

    Why a linear model recovers the ground truth: the drive ``u_j`` is exactly linear
    in the standardized features, and the only nonlinearity is the softplus. `gain`
    sets how rectified it is: as gain -> 0, s(u) is affine in u; for u ~ N(0, 1) the
    correlation of softplus(gain * u) with u (the best a linear readout can reach) is
    0.99 at gain 0.5, 0.96 at gain 1 (the default), 0.92 at gain 2 and 0.86 as the
    softplus approaches a ReLU (large gains, with about half the stimuli near zero
    rate). Rates are strictly positive, with mean
    `mean_rate` over stimuli for every neuroid; Poisson noise (variance = rate) is
    averaged away by repetitions, so more reps and higher `mean_rate` give higher
    split-half reliability.

    Parameters
    ----------
    features : [n_stimuli, p] float array (p >= 1; rank-deficient is fine).
    n_neuroids, n_reps : output sizes.
    mean_rate : mean spike count per stimulus of every neuroid.
    seed : seeds the weights and the Poisson draws.
    n_components : optional rank of the shared tuning subspace.
    gain : softplus sharpness (> 0); see above.

    Returns
    -------
    responses : float32 [n_stimuli, n_reps, n_neuroids] spike counts.
    rates : float64 [n_stimuli, n_neuroids] ground-truth expected counts.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise DatasetError(f"features must be [n_stimuli >= 2, p >= 1], got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise DatasetError("features contain NaN or infinite values")
    if gain <= 0 or mean_rate <= 0 or n_neuroids < 1 or n_reps < 1:
        raise DatasetError(f"need gain > 0, mean_rate > 0, n_neuroids >= 1, n_reps >= 1; got "
                           f"gain={gain}, mean_rate={mean_rate}, n_neuroids={n_neuroids}, "
                           f"n_reps={n_reps}")
    z = _standardize(x)
    if not np.any(z):
        raise DatasetError("features are constant over stimuli: nothing to tune to")
    rng = np.random.default_rng(seed)
    p = z.shape[1]
    if n_components is None:
        w = rng.standard_normal((p, n_neuroids))
    else:
        if n_components < 1:
            raise DatasetError(f"n_components must be >= 1, got {n_components}")
        w = rng.standard_normal((p, n_components)) @ rng.standard_normal((n_components, n_neuroids))
    u = _standardize(z @ w)
    s = _softplus(gain * u) / gain
    rates = mean_rate * s / s.mean(axis=0, keepdims=True)
    counts = rng.poisson(rates[:, None, :], size=(x.shape[0], n_reps, n_neuroids))
    return counts.astype(np.float32), rates


def planted_dataset(
    uri: str,
    images: np.ndarray | Sequence[np.ndarray],
    features: np.ndarray,
    n_neuroids: int = 40,
    n_reps: int = 4,
    seed: int = 0,
    meta_extra: Mapping | None = None,
    overwrite: bool = True,
    **plant_kwargs,
) -> str:
    """Write a dataset folder of `images` with neuroids planted on `features`; return its URI.

    Stimuli ``stim_0000``... (images as PNG under images/), neuroids ``planted_n000``...
    in region ``"planted"``, the first half in subject ``"s0"`` and the rest in ``"s1"``.
    The ground-truth rates are stored next to the data as ``planted_rates.npy``
    ([n_stimuli, n_neuroids], ignored by the loader); dataset.json records the planting
    settings under ``"planted"``. Extra keyword arguments go to `plant_responses`.
    An existing dataset at `uri` is replaced unless ``overwrite=False``.
    """
    images = np.asarray(images) if not isinstance(images, np.ndarray) else images
    feats = np.asarray(features)
    if len(images) != len(feats):
        raise DatasetError(f"{len(images)} images but {len(feats)} feature rows")
    responses, rates = plant_responses(feats, n_neuroids=n_neuroids, n_reps=n_reps, seed=seed,
                                       **plant_kwargs)
    n = len(images)
    width = max(4, len(str(n - 1)))
    sid = [f"stim_{i:0{width}d}" for i in range(n)]
    names = [f"{s}.png" for s in sid]
    stimuli = pd.DataFrame({"stimulus_id": sid, "image": names})
    nw = max(3, len(str(n_neuroids - 1)))
    neuroids = pd.DataFrame({
        "neuroid_id": [f"planted_n{j:0{nw}d}" for j in range(n_neuroids)],
        "subject": ["s0" if j < (n_neuroids + 1) // 2 else "s1" for j in range(n_neuroids)],
        "region": "planted",
    })
    meta = {
        "name": "planted",
        "description": "Synthetic neuroids with planted tuning (cortexzoo.data.synthetic).",
        "source": "cortexzoo.data.synthetic.planted_dataset",
        "license": "CC0-1.0",
        "response_unit": "spike count",
        "planted": {"seed": seed, "n_neuroids": n_neuroids, "n_reps": n_reps,
                    "n_features": int(feats.shape[1]), "rates_file": PLANTED_RATES,
                    **{k: v for k, v in plant_kwargs.items()}},
    }
    meta.update(dict(meta_extra or {}))
    out = write_dataset(uri, meta=meta, stimuli=stimuli, neuroids=neuroids, responses=responses,
                        images=dict(zip(names, images)), overwrite=overwrite)
    fs, root = fsspec.core.url_to_fs(out)
    buf = io.BytesIO()
    np.save(buf, rates)
    fs.pipe_file(root.rstrip("/") + "/" + PLANTED_RATES, buf.getvalue())
    return out
