"""A planted recording and a scan that saves encoders, shared by the control tests.

The recording's sites are driven by ``stages.2.0`` of a tiny random-init network (under a
projection no scan uses); the scan scores that network (A) and another random init of
the same architecture (B, seed 1) at 64 px and saves the held-out best layer's encoder
of each."""
import pytest

from control_planted import MODEL_A, MODEL_B, PLANTED_LAYER


@pytest.fixture(scope="session")
def planted_scan(tmp_path_factory):
    from cortexzoo.features.reduce import ReductionConfig
    from cortexzoo.scan import ScanConfig, run_scan
    from cortexzoo.scan.planted import make_planted_dataset
    from cortexzoo.scan.scoring import ScoringConfig

    root = tmp_path_factory.mktemp("control")
    data = str(root / "planted")
    make_planted_dataset(data, model=MODEL_A, layer=PLANTED_LAYER, n_stimuli=120, image_size=64,
                         n_neuroids=12, n_reps=4, seed=1, input_size=64)
    cfg = ScanConfig(data=data, models=[MODEL_A, MODEL_B], out=str(root / "results"),
                     engine="local", input_size=64, reduction=ReductionConfig(n_components=256),
                     scoring=ScoringConfig(reliability_splits=10, inter_animal=False),
                     progress=False, plot=False, save_encoders="best")
    res = run_scan(cfg)
    enc = {}
    for e in res.summary["encoders"]:
        enc.setdefault(e["model"], []).append(e)
    return {"root": str(root), "data": data, "cfg": cfg, "result": res, "encoders": enc,
            "a": enc[MODEL_A][0]["uri"], "b": enc[MODEL_B][0]["uri"]}
