"""Feature accentuation and controversial synthesis (SCIENCE.md section 7, paper 002).

**Accentuation** (Hamblin et al. 2024): from a seed image ``x0`` and target levels
``t_1..t_T`` of one site, find images ``x_i`` near ``x0`` whose predicted response is
``t_i`` by minimizing, per image,

    ((pred(x_i) - t_i) / sd)^2 + lambda * ||f_l(x_i) - f_l(x0)||^2 / ||f_l(x0)||^2

``sd`` is the SD of the site's responses (the fit term is in SD units) and ``f_l`` the
activation of a regularization layer (default: the layer at half the encoder layer's
relative depth, :func:`~.site_model.reg_layer_for`), its squared
distance taken relative to the seed's, so ``lambda`` means the same for any layer and
site. The images live in the decorrelated Fourier parameterization
(:class:`~.fourier.FourierImage`) initialized at the seed, and each step sees them
under one random jitter, zoom and rotation (:class:`~.augment.Augment`), the seed under
the same warp, and the target of that step is the warped seed's prediction plus
``o_i sd`` (so the seed's own level has no gradient at all, and every level is asked of
the image under any warp); Adam on the spectrum, its learning rate decaying along a
cosine. The images returned are rounded to 8 bits, and
every number reported (achieved prediction, distances) is measured on those 8-bit
images without augmentation: what a lab will show.

**Controversial stimuli** (Golan et al. 2020): from a seed, one image that encoder A
predicts ``delta`` SD above its seed prediction and encoder B ``delta`` SD below its own,
and one the reverse: the same fit term for both encoders, and both encoders' layers in
the regularizer.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch

from .augment import Augment
from .fourier import FourierImage
from .site_model import SiteModel, reg_layer_for

__all__ = ["SynthConfig", "accentuate", "controversial", "levels", "to_uint8"]


@dataclass
class SynthConfig:
    """How images are optimized (the defaults are the README's)."""

    steps: int = 150            # Adam steps
    lr: float = 0.02            # Adam's, on the Fourier parameters (cosine decay to 0)
    reg_weight: float = 1.0     # lambda
    reg_layer: str | None = None  # None: half the encoder layer's depth; "encoder": its own
    decay: float = 1.0          # spectrum decay power of the parameterization
    decorrelate: bool = True    # colour decorrelation
    jitter: float = 0.04        # random shift, fraction of the side
    zoom: float = 0.05          # random zoom, 1 +- zoom
    degrees: float = 5.0        # random rotation, +- degrees
    seed: int = 0               # of the augmentation draws

    def __post_init__(self):
        if not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps must be an integer >= 0, got {self.steps!r}")
        for k in ("lr", "reg_weight", "jitter", "zoom", "degrees"):
            if float(getattr(self, k)) < 0:
                raise ValueError(f"{k} must be >= 0, got {getattr(self, k)!r}")

    @property
    def augment(self) -> Augment:
        return Augment(jitter=self.jitter, scale=self.zoom, degrees=self.degrees, shared=True)

    def to_dict(self) -> dict:
        return asdict(self)


def levels(n_steps: int = 5, step_sd: float = 0.2) -> np.ndarray:
    """Offsets of a sweep in SD units: ``{-n..n} * step_sd`` (11 levels by default)."""
    return np.arange(-n_steps, n_steps + 1, dtype=np.float64) * float(step_sd)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Images [b, 3, h, w] in [0, 1] -> uint8 [b, h, w, 3] (rounded)."""
    return (x.detach().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def from_uint8(u8: np.ndarray, device="cpu") -> torch.Tensor:
    """uint8 [b, h, w, 3] -> float [b, 3, h, w] in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(u8)).to(device).permute(0, 3, 1, 2).float() / 255.0


def _rel_dist(f: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
    """Squared distance of each row of ``f`` to ``f0`` (one row) relative to ``f0``'s."""
    f, f0 = f.flatten(1), f0.flatten(1)
    return ((f - f0) ** 2).sum(1) / (f0 ** 2).sum().clamp_min(1e-12)


def _optimize(param: FourierImage, loss_fn, cfg: SynthConfig, x0: torch.Tensor) -> None:
    """Adam on ``param`` for ``cfg.steps`` steps of ``loss_fn(warped images, warped seed)``,
    the learning rate decaying from ``cfg.lr`` to 0 along a cosine (the last steps settle
    the images instead of leaving them where the last random warp pushed them)."""
    gen = torch.Generator().manual_seed(int(cfg.seed))
    opt = torch.optim.Adam(param.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, cfg.steps), eta_min=0.0)
    aug = cfg.augment
    n = param.spectrum.shape[0]
    for _ in range(cfg.steps):
        opt.zero_grad(set_to_none=True)
        batch = aug(torch.cat([param(), x0]), gen)
        loss = loss_fn(batch[:n], batch[n:])
        loss.backward()
        opt.step()
        sched.step()
    opt.zero_grad(set_to_none=True)


def _distances(model: SiteModel, xq: torch.Tensor, seed: torch.Tensor, reg_layer: str):
    """RMS pixel distance (in [0, 1] units) and relative layer distance of each image to
    the seed (both at 8 bits, without augmentation)."""
    with torch.no_grad():
        _, regs = model(torch.cat([xq, seed]))
        f = regs[reg_layer]
        layer = torch.sqrt(_rel_dist(f[:-1], f[-1:])).cpu().numpy().astype(np.float64)
    pix = torch.sqrt(((xq - seed) ** 2).flatten(1).mean(1)).cpu().numpy().astype(np.float64)
    return pix, layer


def accentuate(model: SiteModel, site: str, seed_u8: np.ndarray, offsets_sd: Sequence[float],
               cfg: SynthConfig) -> dict:
    """One sweep: images of ``site`` from the seed ``seed_u8`` (uint8 [R, R, 3], the
    encoder's canvas) at ``seed prediction + offsets_sd * sd``.

    Returns ``images`` (uint8 [T, R, R, 3]), ``target``, ``achieved`` (predictions of the
    8-bit images), ``seed_prediction``, ``sd``, ``distance_pixels``, ``distance_layer``
    (relative, in the regularization layer)."""
    dev = model.device
    col = model.sites.index(site)
    reg_layer = reg_layer_for(model.model, model.layer, cfg.reg_layer)
    if reg_layer not in model.reg_layers:
        raise ValueError(f"the site model was not built with regularization layer {reg_layer!r}")
    seed = from_uint8(seed_u8[None], dev)
    sd = float(model.response_sd[col])
    if not np.isfinite(sd) or sd <= 0:
        raise ValueError(f"site {site!r} has no response spread (SD {sd}); it cannot be swept")
    seed_pred = float(model.predict(seed)[0, col])
    offsets = np.asarray(offsets_sd, dtype=np.float64)
    targets = seed_pred + offsets * sd
    T = offsets.size
    param = FourierImage.from_images(seed.expand(T, -1, -1, -1), decay=cfg.decay,
                                     decorrelate=cfg.decorrelate).to(dev)
    x0 = param().detach()[:1]  # the seed as the parameterization renders it
    off = torch.tensor(offsets * sd, dtype=torch.float32, device=dev)

    def loss_fn(x, xs):
        pred, regs = model(torch.cat([x, xs]))
        # targets relative to the seed under the same warp: at the seed, offset 0 has no
        # gradient at all (no drift), and each level is asked to hold under any warp
        fit = ((pred[:T, col] - pred[T:, col].detach() - off) / sd) ** 2
        if cfg.reg_weight == 0:
            return fit.mean()
        f = regs[reg_layer]
        return (fit + cfg.reg_weight * _rel_dist(f[:T], f[T:].detach())).mean()

    _optimize(param, loss_fn, cfg, x0)
    with torch.no_grad():
        u8 = to_uint8(param())
    xq = from_uint8(u8, dev)
    achieved = model.predict(xq)[:, col]
    pix, lay = _distances(model, xq, seed, reg_layer)
    return {"images": u8, "target": targets, "offset_sd": offsets, "achieved": achieved,
            "seed_prediction": seed_pred, "sd": sd, "distance_pixels": pix,
            "distance_layer": lay, "reg_layer": reg_layer}


def controversial(model_a: SiteModel, model_b: SiteModel, site: str, seed_u8: np.ndarray,
                  delta_sd: float, cfg: SynthConfig) -> dict:
    """Two images from one seed: ``a_high`` (A predicts ``+delta`` SD from its seed
    prediction, B ``-delta`` SD from its own) and ``b_high`` (the reverse).

    Returns ``images`` (uint8 [2, R, R, 3]), ``condition``, per model ``pred_a``/``pred_b``
    (predictions of the 8-bit images), ``seed_a``/``seed_b``, ``sd_a``/``sd_b``, ``z_a``/
    ``z_b`` (predictions minus the seed's, in SD units) and ``distance_pixels``."""
    if model_a.canvas_size != model_b.canvas_size:
        raise ValueError(f"encoders A and B present stimuli on canvases of {model_a.canvas_size} "
                         f"and {model_b.canvas_size} pixels: controversial images need one size "
                         "(scan both with the same --input-size and --stimulus)")
    dev = model_a.device
    ca, cb = model_a.sites.index(site), model_b.sites.index(site)
    la = reg_layer_for(model_a.model, model_a.layer, cfg.reg_layer)
    lb = reg_layer_for(model_b.model, model_b.layer, cfg.reg_layer)
    seed = from_uint8(seed_u8[None], dev)
    sa, sb = float(model_a.response_sd[ca]), float(model_b.response_sd[cb])
    pa0, pb0 = float(model_a.predict(seed)[0, ca]), float(model_b.predict(seed)[0, cb])
    d = float(delta_sd)
    ta = torch.tensor([d * sa, -d * sa], device=dev)   # from each model's seed prediction
    tb = torch.tensor([-d * sb, d * sb], device=dev)
    param = FourierImage.from_images(seed.expand(2, -1, -1, -1), decay=cfg.decay,
                                     decorrelate=cfg.decorrelate).to(dev)
    x0 = param().detach()[:1]

    def loss_fn(x, xs):
        batch = torch.cat([x, xs])
        pa, ra = model_a(batch)
        pb, rb = model_b(batch)
        loss = (((pa[:2, ca] - pa[2:, ca].detach() - ta) / sa) ** 2
                + ((pb[:2, cb] - pb[2:, cb].detach() - tb) / sb) ** 2)
        if cfg.reg_weight:
            fa, fb = ra[la], rb[lb]
            loss = loss + cfg.reg_weight * (_rel_dist(fa[:2], fa[2:].detach())
                                            + _rel_dist(fb[:2], fb[2:].detach()))
        return loss.mean()

    _optimize(param, loss_fn, cfg, x0)
    with torch.no_grad():
        u8 = to_uint8(param())
    xq = from_uint8(u8, dev)
    pa, pb = model_a.predict(xq)[:, ca], model_b.predict(xq)[:, cb]
    pix = torch.sqrt(((xq - seed) ** 2).flatten(1).mean(1)).cpu().numpy().astype(np.float64)
    return {"images": u8, "condition": ["a_high", "b_high"], "pred_a": pa, "pred_b": pb,
            "seed_a": pa0, "seed_b": pb0, "sd_a": sa, "sd_b": sb, "z_a": (pa - pa0) / sa,
            "z_b": (pb - pb0) / sb, "target_a": ta.cpu().numpy().astype(np.float64),
            "target_b": tb.cpu().numpy().astype(np.float64), "distance_pixels": pix}
