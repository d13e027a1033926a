"""The probe battery's time per twin at the paper's sizes, and where the time goes.

    python benchmarks/probe.py                          # cnn (paper widths), 36x64 frames
    python benchmarks/probe.py --encoders cnn,resnet18 --device cuda
    python benchmarks/probe.py --scale 0.25             # every set size a quarter (a quick look)

Writes synthetic sessions (one reference session long enough for the eigenspectrum's
5000 clips), builds each twin with random weights (the battery's cost does not depend
on what the twin learned) and runs every probe family on it in this process, exactly
as one Ray task of ``cortexzoo twins probe`` does (``run_unit``: load the twin, make
the stimuli, forward passes, probe fits / tuning fits / PCA, write tables and scores).
Sizes are ``ProbeConfig()``'s defaults (configs/probe_default.yaml); ``--scale``
multiplies every set size. Printed per (twin, family): seconds in total and per stage
(``stimuli_s`` generating stimuli or reading clips, ``forward_s`` the twin's forward
passes, ``probe_fit_s`` the logistic probes with their l2 search, ``fits_s`` the DoG and
Naka-Rushton fits, ``pca_s``, ``load_s``, ``write_s``), frames through the encoder and
frames per second of the forward passes; then the total per twin.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

for _k, _v in (("RAY_AUTH_MODE", "disabled"), ("RAY_USAGE_STATS_ENABLED", "0"),
               ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0"), ("HF_HUB_OFFLINE", "1")):
    os.environ.setdefault(_k, _v)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

STAGES = ("load_s", "stimuli_s", "forward_s", "probe_fit_s", "fits_s", "pca_s", "write_s")


def _scaled(cfg: dict, scale: float) -> dict:
    """Every set size of the default config times ``scale`` (at least a few items)."""
    if scale == 1.0:
        return cfg
    s = lambda v, lo=8: max(lo, int(round(v * scale)))  # noqa: E731
    o = cfg["orientation"]
    o["train_sizes"] = sorted({s(v, 8) for v in o["train_sizes"]})
    for k in ("n_val", "n_test", "n_ood"):
        o[k] = s(o[k], 16)
    c = cfg["contrast"]
    for k in ("n_train", "n_val", "n_test_per_contrast", "n_test_blank"):
        c[k] = s(c[k])
    m = cfg["motion"]
    for k in ("n_train", "n_val", "n_test_per_coherence"):
        m[k] = s(m[k])
    cfg["eigenspectrum"]["n_clips"] = s(cfg["eigenspectrum"]["n_clips"], 300)
    return cfg


def _export_random_twin(store, encoder: str, seed: int, coll, hw, twin_kwargs: dict) -> None:
    import torch

    from cortexzoo.twins.model import Twin, TwinConfig
    from cortexzoo.twins.train import pair_key, save_twin_bytes

    cfg = TwinConfig(encoder=encoder, seed=seed, **twin_kwargs)
    torch.manual_seed(seed)
    animals = coll.animals
    model = Twin(cfg, animals, [coll.n_neurons()[a] for a in animals], hw)
    state = {"model": model.state_dict(), "twin_config": cfg.to_dict(), "animals": animals,
             "n_neurons": [coll.n_neurons()[a] for a in animals], "input_hw": list(hw),
             "epoch": 0, "best_val_loss": float("nan"), "history": []}
    store.put_bytes(f"twins/best/{pair_key(encoder, seed)}.pt",
                    save_twin_bytes(state, encoder=encoder, seed=seed))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoders", default="cnn", help="comma-separated twin encoders")
    p.add_argument("--families", default="orientation,contrast,motion,tuning,eigenspectrum")
    p.add_argument("--height", type=int, default=36)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--frames", type=int, default=6500, help="frames of the reference session")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every set size")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--feature-dim", type=int, default=256)
    p.add_argument("--hidden-dim", type=int, default=256)
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args(argv)

    import torch

    from cortexzoo.data.sessions import load_sessions
    from cortexzoo.data.sessions_synth import make_synthetic_sessions
    from cortexzoo.probe.config import ProbeConfig
    from cortexzoo.probe.geometry import reference_session
    from cortexzoo.probe.run import run_unit
    from cortexzoo.store import ResultStore

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    tmp = tempfile.mkdtemp(prefix="probe-bench-")
    data, out = os.path.join(tmp, "sessions"), os.path.join(tmp, "results")
    t0 = time.perf_counter()
    make_synthetic_sessions(data, n_animals=2, n_neurons=(24, 32), n_frames=args.frames,
                            height=args.height, width=args.width)
    coll = load_sessions(data)
    print(f"sessions: {time.perf_counter() - t0:.1f} s", flush=True)
    cfg = ProbeConfig.from_dict(_scaled({**ProbeConfig().to_dict(), "data": data, "out": out,
                                         "batch_size": args.batch_size}, args.scale))
    store = ResultStore(out)
    hw = (args.height, args.width)
    session = reference_session(coll, cfg).name
    fams = [f.strip() for f in args.families.split(",") if f.strip()]
    rows = []
    where = (torch.cuda.get_device_name(0) if device == "cuda"
             else f"{os.cpu_count()} CPUs, {platform.machine()}")
    print(f"device {device} ({where}, {torch.get_num_threads()} torch threads), frames "
          f"{hw[0]}x{hw[1]}, scale {args.scale}, load average before "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    hdr = f"{'twin':<22} {'family':<13} {'total s':>8} " + " ".join(
        f"{s[:-2]:>9}" for s in STAGES) + f" {'frames':>8} {'frames/s':>9}"
    print(hdr)
    for enc in [e.strip() for e in args.encoders.split(",") if e.strip()]:
        kw = {"feature_dim": args.feature_dim, "hidden_dim": args.hidden_dim}
        _export_random_twin(store, enc, 0, coll, hw, kw)
        pair = f"{enc}-seed0"
        total = 0.0
        for fam in fams:
            got = run_unit(out, data, pair, fam, cfg, run_id="bench", dataset="bench",
                           session=session, device=device)
            t, info = got["timings"], got["info"]
            total += t["total_s"]
            fps = info["frames"] / info["forward_only_s"] if info.get("forward_only_s") else 0
            rows.append({"twin": pair, "family": fam, **t, "frames": info["frames"],
                         "frames_per_s": fps, "device": device})
            print(f"{pair:<22} {fam:<13} {t['total_s']:>8.1f} " + " ".join(
                f"{t.get(s, 0.0):>9.2f}" for s in STAGES) +
                f" {info['frames']:>8d} {fps:>9.0f}", flush=True)
        rows.append({"twin": pair, "family": "ALL", "total_s": total, "device": device})
        print(f"{pair:<22} {'ALL':<13} {total:>8.1f}  ({total / 60:.1f} min per twin; load "
              f"average {os.getloadavg()[0]:.1f})", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
