"""Image domains made from photos: numpy, scipy.ndimage and PIL only.

Each filter maps an RGB image (float [S, S, 3] in [0, 1]) to an RGB image of the same
size, deterministically from its parameters and a random generator (used by ``noise``
and ``mosaic`` only). :data:`FILTERS` lists them with their default parameters;
:mod:`cortexzoo.data.domains` applies them and records each image's recipe.

The shape-based domains (``silhouette``, ``outline``, ``convexhull``, ``skeleton``) need
the object's mask, which a photo does not carry: :func:`foreground_mask` estimates it
as the pixels whose (smoothed) colour is far from the colours of the image border
(k-means on a border strip, clusters holding at least a fifth of it taken as
background, Otsu's threshold on the distance, the largest connected
component with its holes filled). It is a heuristic: on a photo whose object touches
the border or matches the background it gives a rough blob (the stimulus table records
each mask's area fraction). A dataset that has masks can bring its own domains instead.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from scipy import ndimage as ndi

__all__ = ["FILTERS", "DEFAULT_PARAMS", "MASK_DOMAINS", "apply_filter", "foreground_mask",
           "canny_edges", "thin", "gray"]

_LUMA = np.array([0.299, 0.587, 0.114])


def gray(img: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, [S, S] in [0, 1]."""
    return img @ _LUMA


def _rgb(g: np.ndarray) -> np.ndarray:
    return np.repeat(np.clip(g, 0.0, 1.0)[..., None], 3, axis=2)


def _ink(mask: np.ndarray) -> np.ndarray:
    """Black where ``mask``, white elsewhere."""
    return _rgb(np.where(mask, 0.0, 1.0))


def _width(size: int, frac: float) -> int:
    return max(1, int(round(size * frac)))


# ------------------------------------------------------------------------- edges
def canny_edges(g: np.ndarray, sigma: float, high_quantile: float = 0.9,
                low_ratio: float = 0.4) -> np.ndarray:
    """Canny's edge detector: Gaussian smoothing, Sobel gradients, non-maximum suppression
    along the gradient direction (4 sectors), hysteresis (weak edges kept where connected
    to strong ones). Thresholds are relative: ``high`` is the ``high_quantile`` of the
    gradient magnitude over the image, ``low = low_ratio * high``."""
    s = ndi.gaussian_filter(g, sigma) if sigma > 0 else g
    gx, gy = ndi.sobel(s, axis=1), ndi.sobel(s, axis=0)
    mag = np.hypot(gx, gy)
    if not np.any(mag > 0):
        return np.zeros_like(g, dtype=bool)
    ang = (np.rad2deg(np.arctan2(gy, gx)) + 180.0) % 180.0
    sector = (np.floor((ang + 22.5) / 45.0).astype(int)) % 4  # 0: 0 deg, 1: 45, 2: 90, 3: 135
    P = np.pad(mag, 1)
    h, w = mag.shape
    shifts = {0: ((0, 1), (0, -1)), 1: ((1, 1), (-1, -1)), 2: ((1, 0), (-1, 0)), 3: ((1, -1), (-1, 1))}
    keep = np.zeros_like(mag, dtype=bool)
    for sec, ((dy1, dx1), (dy2, dx2)) in shifts.items():
        n1 = P[1 + dy1:1 + dy1 + h, 1 + dx1:1 + dx1 + w]
        n2 = P[1 + dy2:1 + dy2 + h, 1 + dx2:1 + dx2 + w]
        keep |= (sector == sec) & (mag >= n1) & (mag >= n2)
    high = float(np.quantile(mag, high_quantile))
    if high <= 0:
        high = float(mag.max()) * 0.5
    low = low_ratio * high
    weak = keep & (mag >= low)
    strong = keep & (mag >= high)
    labels, n = ndi.label(weak, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return strong
    has_strong = np.zeros(n + 1, dtype=bool)
    has_strong[np.unique(labels[strong])] = True
    has_strong[0] = False
    return has_strong[labels]


# -------------------------------------------------------------------- masks, shapes
def _otsu(values: np.ndarray, bins: int = 256) -> float:
    hist, edges = np.histogram(values, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist).astype(np.float64)
    w1 = w0[-1] - w0
    m = np.cumsum(hist * centers)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu0 = m / w0
        mu1 = (m[-1] - m) / w1
        between = w0 * w1 * (mu0 - mu1) ** 2
    between = np.nan_to_num(between)
    return float(centers[int(np.argmax(between))])


def _kmeans(points: np.ndarray, k: int, iters: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic k-means (initial centres at luminance quantiles): centres and the
    share of the points in each."""
    order = np.argsort(points @ _LUMA)
    centers = points[order[np.linspace(0, len(points) - 1, k).astype(int)]].copy()
    for _ in range(iters):
        d = ((points[:, None, :] - centers[None]) ** 2).sum(-1)
        lab = d.argmin(1)
        for j in range(k):
            if np.any(lab == j):
                centers[j] = points[lab == j].mean(0)
    lab = ((points[:, None, :] - centers[None]) ** 2).sum(-1).argmin(1)
    return centers, np.bincount(lab, minlength=k) / len(points)


def foreground_mask(img: np.ndarray, border: float = 0.06, clusters: int = 3,
                    smooth: float = 0.01, min_share: float = 0.2) -> np.ndarray:
    """Boolean [S, S] mask of the object (see the module docstring)."""
    S = img.shape[0]
    sm = np.stack([ndi.gaussian_filter(img[..., c], smooth * S) for c in range(3)], axis=-1)
    b = max(1, int(round(border * S)))
    strip = np.concatenate([sm[:b].reshape(-1, 3), sm[-b:].reshape(-1, 3),
                            sm[:, :b].reshape(-1, 3), sm[:, -b:].reshape(-1, 3)])
    centers, share = _kmeans(strip, clusters)
    # a colour on a small part of the border is the object touching it, not background
    centers = centers[share >= min(min_share, share.max())]
    dist = np.sqrt(((sm[:, :, None, :] - centers[None, None]) ** 2).sum(-1)).min(-1)
    if dist.max() <= 1e-6:
        return np.zeros((S, S), dtype=bool)
    mask = dist > _otsu(dist)
    r = max(1, S // 64)
    mask = ndi.binary_opening(mask, iterations=r)
    mask = ndi.binary_closing(mask, iterations=r, border_value=0)
    mask = ndi.binary_fill_holes(mask)
    labels, n = ndi.label(mask)
    if n > 1:
        sizes = ndi.sum(mask, labels, index=np.arange(1, n + 1))
        mask = labels == (1 + int(np.argmax(sizes)))
    return mask


def thin(mask: np.ndarray, max_iter: int = 1000) -> np.ndarray:
    """Zhang-Suen thinning of a boolean mask to a one-pixel skeleton."""
    img = mask.astype(np.uint8).copy()
    for _ in range(max_iter):
        changed = False
        for step in (0, 1):
            P = np.pad(img, 1)
            p2, p3, p4 = P[:-2, 1:-1], P[:-2, 2:], P[1:-1, 2:]
            p5, p6, p7 = P[2:, 2:], P[2:, 1:-1], P[2:, :-2]
            p8, p9 = P[1:-1, :-2], P[:-2, :-2]
            ring = [p2, p3, p4, p5, p6, p7, p8, p9, p2]
            nb = sum(r.astype(np.int16) for r in ring[:8])
            trans = sum(((ring[i] == 0) & (ring[i + 1] == 1)).astype(np.int16) for i in range(8))
            if step == 0:
                c = (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
            else:
                c = (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
            rm = (img == 1) & (nb >= 2) & (nb <= 6) & (trans == 1) & c
            if rm.any():
                img[rm] = 0
                changed = True
        if not changed:
            break
    return img.astype(bool)


def _hull_mask(mask: np.ndarray) -> np.ndarray:
    from PIL import Image, ImageDraw
    from scipy.spatial import ConvexHull, QhullError

    ys, xs = np.nonzero(mask)
    if ys.size < 3:
        return mask.copy()
    pts = np.stack([xs, ys], axis=1).astype(np.float64)
    try:
        hull = ConvexHull(pts)
    except QhullError:  # collinear points
        return mask.copy()
    canvas = Image.new("L", (mask.shape[1], mask.shape[0]), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in pts[hull.vertices]], fill=1, outline=1)
    return np.asarray(canvas, dtype=bool) | mask


# ---------------------------------------------------------------------- filters
def _kuwahara(img: np.ndarray, radius: int) -> np.ndarray:
    """Kuwahara filter: each pixel takes the mean colour of the least-variant of the four
    (radius+1)^2 quadrants around it (variance of luma): flat strokes, kept edges."""
    size = radius + 1
    g = gray(img)
    means, vars_ = [], []
    m_all = np.stack([ndi.uniform_filter(img[..., c], size) for c in range(3)], axis=-1)
    mg = ndi.uniform_filter(g, size)
    vg = np.maximum(ndi.uniform_filter(g * g, size) - mg * mg, 0.0)
    # the window centred at (y+dy, x+dx) is the quadrant of (y, x) towards (dy, dx)
    off = radius // 2 + (radius % 2)
    for dy in (-off, off):
        for dx in (-off, off):
            means.append(np.roll(m_all, (-dy, -dx), axis=(0, 1)))
            vars_.append(np.roll(vg, (-dy, -dx), axis=(0, 1)))
    pick = np.argmin(np.stack(vars_), axis=0)
    return np.take_along_axis(np.stack(means), pick[None, ..., None], axis=0)[0]


def f_photo(img, p, rng):
    return img


def f_grayscale(img, p, rng):
    return _rgb(gray(img))


def f_blur(img, p, rng):
    s = p["sigma"] * img.shape[0]
    return np.stack([ndi.gaussian_filter(img[..., c], s) for c in range(3)], axis=-1)


def f_noise(img, p, rng):
    return np.clip(img + rng.normal(0.0, p["sigma"], size=img.shape), 0.0, 1.0)


def f_lines(img, p, rng):
    S = img.shape[0]
    e = canny_edges(gray(img), p["sigma"] * S, p["high_quantile"], p["low_ratio"])
    w = _width(S, p["width"]) - 1
    if w > 0:
        e = ndi.binary_dilation(e, iterations=w)
    return _ink(e)


def f_silhouette(img, p, rng, mask=None):
    return _ink(foreground_mask(img) if mask is None else mask)


def f_outline(img, p, rng, mask=None):
    mask = foreground_mask(img) if mask is None else mask
    w = _width(img.shape[0], p["width"])
    return _ink(mask & ~ndi.binary_erosion(mask, iterations=w, border_value=0))


def f_convexhull(img, p, rng, mask=None):
    return _ink(_hull_mask(foreground_mask(img) if mask is None else mask))


def f_skeleton(img, p, rng, mask=None):
    mask = foreground_mask(img) if mask is None else mask
    smooth = ndi.binary_opening(mask, iterations=max(1, img.shape[0] // 56))  # fewer spurs
    sk = thin(smooth if smooth.any() else mask)
    w = _width(img.shape[0], p["width"]) - 1
    return _ink(ndi.binary_dilation(sk, iterations=w) if w > 0 else sk)


def f_mosaic(img, p, rng):
    """Square tiles of the mean colour of each cell (a little seeded colour jitter per
    tile), with grey grout lines between them; ``tiles`` per side, at most one per 6 pixels."""
    S = img.shape[0]
    n = max(2, min(int(p["tiles"]), S // 6))
    edges = np.linspace(0, S, n + 1).round().astype(int)
    out = np.empty_like(img)
    jitter = rng.normal(0.0, p["jitter"], size=(n, n, 3))
    for i in range(n):
        for j in range(n):
            y0, y1, x0, x1 = edges[i], edges[i + 1], edges[j], edges[j + 1]
            out[y0:y1, x0:x1] = img[y0:y1, x0:x1].reshape(-1, 3).mean(0) + jitter[i, j]
    g = _width(S, p["grout"])
    for e in edges[1:-1]:
        out[max(0, e - g // 2):e - g // 2 + g] = p["grout_gray"]
        out[:, max(0, e - g // 2):e - g // 2 + g] = p["grout_gray"]
    return np.clip(out, 0.0, 1.0)


def f_painting(img, p, rng):
    """Oil-paint look: a Kuwahara filter, applied twice, with boosted saturation."""
    r = _width(img.shape[0], p["radius"])
    out = _kuwahara(_kuwahara(img, r), r)
    g = gray(out)[..., None]
    return np.clip(g + (out - g) * p["saturation"], 0.0, 1.0)


def f_cartoon(img, p, rng):
    """Flat colours (median filter, then each channel quantized to a few levels) with black
    edge lines on top."""
    S = img.shape[0]
    size = 2 * _width(S, p["smooth"]) + 1
    sm = np.stack([ndi.median_filter(img[..., c], size=size) for c in range(3)], axis=-1)
    levels = int(p["levels"])
    flat = (np.floor(sm * levels - 1e-9).clip(0, levels - 1) + 0.5) / levels
    e = canny_edges(gray(img), p["edge_sigma"] * S, p["high_quantile"], 0.4)
    w = _width(S, p["width"]) - 1
    if w > 0:
        e = ndi.binary_dilation(e, iterations=w)
    flat[e] = 0.0
    return flat


def f_sketch(img, p, rng):
    """Pencil sketch: the grey image colour-dodged by its blurred negative, darkened."""
    g = gray(img)
    inv = ndi.gaussian_filter(1.0 - g, p["sigma"] * img.shape[0])
    dodge = np.clip(g / np.maximum(1.0 - inv, 1e-3), 0.0, 1.0)
    return _rgb(dodge ** p["gamma"])


#: name -> (filter, default parameters). Sizes are fractions of the image side.
FILTERS: dict[str, tuple[Callable[..., np.ndarray], dict[str, Any]]] = {
    "photo": (f_photo, {}),
    "grayscale": (f_grayscale, {}),
    "lines": (f_lines, {"sigma": 0.008, "high_quantile": 0.9, "low_ratio": 0.4, "width": 1 / 160}),
    "silhouette": (f_silhouette, {}),
    "outline": (f_outline, {"width": 1 / 100}),
    "convexhull": (f_convexhull, {}),
    "skeleton": (f_skeleton, {"width": 1 / 100}),
    "mosaic": (f_mosaic, {"tiles": 24, "jitter": 0.04, "grout": 1 / 150, "grout_gray": 0.45}),
    "blur": (f_blur, {"sigma": 0.02}),
    "noise": (f_noise, {"sigma": 0.25}),
    "painting": (f_painting, {"radius": 0.02, "saturation": 1.35}),
    "cartoon": (f_cartoon, {"smooth": 0.012, "levels": 5, "edge_sigma": 0.01,
                            "high_quantile": 0.92, "width": 1 / 160}),
    "sketch": (f_sketch, {"sigma": 0.03, "gamma": 2.0}),
}
DEFAULT_PARAMS = {name: dict(p) for name, (_, p) in FILTERS.items()}
#: Domains drawn from the estimated object mask.
MASK_DOMAINS = ("silhouette", "outline", "convexhull", "skeleton")


def apply_filter(name: str, img: np.ndarray, params: dict[str, Any], seed: int,
                 mask: np.ndarray | None = None) -> np.ndarray:
    """``FILTERS[name]`` on ``img`` (float RGB in [0, 1]) with ``params`` and a generator
    seeded by ``seed``; returns uint8 RGB. ``mask``: a precomputed object mask for the
    shape domains (the same as :func:`foreground_mask` gives, computed once per image)."""
    if name not in FILTERS:
        raise ValueError(f"unknown domain {name!r}; known: {sorted(FILTERS)}")
    fn = FILTERS[name][0]
    rng = np.random.default_rng(seed)
    out = fn(img, params, rng, mask=mask) if name in MASK_DOMAINS else fn(img, params, rng)
    return np.clip(np.asarray(out) * 255.0 + 0.5, 0, 255).astype(np.uint8)
