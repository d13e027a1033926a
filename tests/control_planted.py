"""Shared by the control tests (tests/control/): the planted recording's models and layer."""
MODEL_A = "timm:test_byobnet@random"
MODEL_B = "timm:test_byobnet@random#1"
PLANTED_LAYER = "stages.2.0"


def random_encoder(out: str, spec: str, layer: str, sites, input_size: int = 64,
                   stimulus: str = "whole", k: int = 128, seed: int = 0, like=None):
    """An encoder with a random readout (normal weights, seeded) on ``spec``'s ``layer``,
    written under ``out`` like a scan's: an oracle unrelated to any recording. ``like``: an
    Encoder whose site statistics (response SD, mean) to copy. Returns its URI."""
    import dataclasses

    import numpy as np

    from cortexzoo.core import cache_key
    from cortexzoo.features.reduce import ReductionConfig, layer_seed
    from cortexzoo.scan.encoders import ENCODER_FORMAT, Encoder, write_encoder
    from cortexzoo.store import ResultStore
    from cortexzoo.zoo import describe_model, parse_spec
    from cortexzoo.zoo.weights import weights_identity

    s = parse_spec(spec)
    desc = describe_model(s, input_size=input_size, stimulus=stimulus)
    red = ReductionConfig(n_components=k)
    rng = np.random.default_rng(seed)
    t = len(sites)
    coef = rng.normal(0, 1 / np.sqrt(k), (k, t))
    stats = {"response_sd": [1.0] * t, "response_mean": [0.0] * t}
    if like is not None:
        idx = like.site_index(sites)
        stats = {key: like.site_stat(key)[idx].tolist() for key in stats}
    meta = {"format": ENCODER_FORMAT, "version": 1, "model": str(s), "model_key": s.key,
            "weights_id": weights_identity(s),
            "model_id": cache_key.model_id(str(s), weights_identity(s)), "layer": layer,
            "region": "random", "chosen": "random", "preprocessing": desc.preprocess.to_dict(),
            "stimulus": stimulus, "input_size": input_size,
            "reduction": dict(dataclasses.asdict(red), model_key=s.key,
                              layer_seed=layer_seed(red.seed, s.key, layer)),
            "sites": {"neuroid_id": list(sites), "subject": [""] * t, "alpha": [1.0] * t,
                      "r": [0.0] * t, "ev": [0.0] * t, **stats},
            "n_features": k}
    enc = Encoder(meta, coef, np.zeros(t), np.zeros(k))
    return write_encoder(ResultStore(out), f"encoders/random/{s.key}/{layer}", enc)
