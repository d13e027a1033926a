"""A planted dataset for fine-tuning tests, demos and benchmarks.

Responses are planted (:func:`cortexzoo.data.synthetic.plant_responses`: a softplus of a
linear function, Poisson noise) on the globally pooled features of the shallow CNN
(seed 0) truncated after ``blocks`` blocks, computed on the same normalized images a
network sees. The true model is therefore reachable: ``custom:shallow_cnn`` with
``blocks`` blocks, frozen, seed 0, plus a decoder.
"""
from __future__ import annotations

import numpy as np

__all__ = ["make_planted_dataset"]


def make_planted_dataset(uri: str, n_stimuli: int = 160, size: int = 32, blocks: int = 2,
                         n_neuroids: int = 20, n_reps: int = 8, seed: int = 0,
                         mean_rate: float = 20.0, n_components: int | None = 4) -> str:
    """Write the planted dataset folder at `uri` (local, s3:// or gs://) and return its URI."""
    import torch

    from cortexzoo.data.synthetic import make_images, planted_dataset

    from .loaders import Normalizer
    from .networks import build_network
    from .presets import load_preset

    images = make_images(n_stimuli, size, seed=seed)
    cfg = load_preset("shallow-cnn", blocks=blocks, frozen=True, image_size=size, seed=0)
    net = build_network(cfg, 1)
    x = Normalizer(net.preprocess.mean, net.preprocess.std)(
        torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))))
    with torch.no_grad():
        feats = net.model.backbone(x).mean(dim=(2, 3)).numpy().astype(np.float64)
    return planted_dataset(uri, images, feats, n_neuroids=n_neuroids, n_reps=n_reps, seed=seed,
                           mean_rate=mean_rate, n_components=n_components,
                           meta_extra={"planted_network": {"backbone": cfg.backbone,
                                                           "blocks": blocks, "seed": 0,
                                                           "image_size": size}})
