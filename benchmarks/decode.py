"""Benchmark: out-of-domain decoding (paper 001) against a plain scikit-learn loop.

    python benchmarks/decode.py                 # 100 splits x 13 domains, both populations
    python benchmarks/decode.py --splits 20     # shorter
    python benchmarks/decode.py --ray           # also the same units as Ray tasks (all cores)

The work of one model layer and one recorded population, at the paper's sizes: 13
domains of 10 categories (a training domain of 640 images, 12 test domains of 150),
100 splits of 100 training, 20 held-out and 12 x 50 test images, a log grid of unit
counts (10 points from 1 to the population's size) with 5 unit draws per split below
the full size: a 1280-unit layer (EfficientNet-Lite0's penultimate layer's width) and 71
sites (the paper's IT population). Features are planted (category codes shared by all
domains plus domain-specific ones and noise; their values do not change the work).

Both sides do the same (split, draw) problems in one process, one BLAS thread each:

* cortexzoo: ``cortexzoo.decode.decode_population`` per unit count (the problems of a
  count batched: standardization, one SVD or Gram eigendecomposition per problem for
  all alphas, decisions, 2AFC);
* scikit-learn: for every problem ``StandardScaler`` + ``RidgeClassifierCV`` (alpha by
  leave-one-out over the same grid) + ``decision_function`` + 2AFC, on the same units
  and images (the unit draws are taken from cortexzoo's run).

Printed: time per side and the ratio per population and in all, where cortexzoo's time
goes (gathering the units' features, fitting, decisions, 2AFC) and scikit-learn's
(scaler, fit, decisions, 2AFC), and agreement (max |accuracy difference| over every
split, draw and domain; the fraction of problems with the same alpha). ``--ray`` adds the
wall time of the same units as Ray tasks (``cortexzoo.decode.engine.UnitRunner``).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
_LIB = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, _LIB)  # this checkout's package, here and in Ray workers
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_LIB, os.environ.get("PYTHONPATH")) if p)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def planted(n_classes=10, n_train_domain=640, n_other=150, n_domains=13, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for d in range(n_domains):
        n = n_train_domain if d == 0 else n_other
        for i in range(n):
            rows.append((f"d{d}-{i}", "hvm" if d == 0 else f"domain{d}", f"c{i % n_classes}"))
    st = pd.DataFrame(rows, columns=["stimulus_id", "domain", "category"])
    lab = st["category"].str[1:].astype(int).to_numpy()
    dom = pd.factorize(st["domain"])[0]

    def population(p, snr):
        inv = rng.normal(size=(n_classes, p))
        spec = rng.normal(size=(n_domains, n_classes, p))
        return (snr * (inv[lab] + 0.7 * spec[dom, lab]) + rng.normal(size=(len(st), p))).astype(np.float32)

    return st, {"layer (1280 units)": population(1280, 0.08), "IT (71 sites)": population(71, 0.2)}


def two_afc_np(scores, labels):
    true = scores[np.arange(len(labels)), labels][:, None]
    return ((true > scores).sum(1) + 0.5 * ((true == scores).sum(1) - 1)) / (scores.shape[1] - 1)


def sklearn_unit(X, splits, units, alphas, timings):
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.preprocessing import StandardScaler

    S, D, _ = units.shape
    acc = np.empty((S, D, len(splits.domains)))
    alpha = np.empty((S, D))
    for s in range(S):
        tr, te = splits.train[s], splits.test[s]
        for d in range(D):
            cols = units[s, d]
            t0 = time.perf_counter()
            sc = StandardScaler().fit(X[np.ix_(tr, cols)])
            Ztr, Zte = sc.transform(X[np.ix_(tr, cols)]), sc.transform(X[np.ix_(te, cols)])
            t1 = time.perf_counter()
            clf = RidgeClassifierCV(alphas=alphas).fit(Ztr, splits.labels[tr])
            t2 = time.perf_counter()
            dec = clf.decision_function(Zte)
            t3 = time.perf_counter()
            a = two_afc_np(dec, splits.labels[te])
            acc[s, d] = [a[splits.test_domain == j].mean() for j in range(len(splits.domains))]
            alpha[s, d] = clf.alpha_
            t4 = time.perf_counter()
            for name, dt in (("scaler", t1 - t0), ("fit", t2 - t1), ("decide", t3 - t2), ("2afc", t4 - t3)):
                timings[name] = timings.get(name, 0.0) + dt
    return acc, alpha


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--splits", type=int, default=100)
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--grid-points", type=int, default=10)
    ap.add_argument("--ray", action="store_true", help="also time the units as Ray tasks")
    args = ap.parse_args(argv)

    from cortexzoo.decode import DecodeConfig, SplitConfig, decode_population, draw_splits
    from cortexzoo.decode.run import unit_grid
    from cortexzoo.mapping.solvers import default_alphas

    alphas = default_alphas()
    st, pops = planted()
    t0 = time.perf_counter()
    splits = draw_splits(st, SplitConfig(n_splits=args.splits), "hvm",
                         [d for d in dict.fromkeys(st["domain"]) if d != "hvm"])
    t_split = time.perf_counter() - t0
    print(f"{len(st)} images, {len(splits.domains)} domains, {len(splits.classes)} classes; "
          f"{args.splits} splits of {splits.train.shape[1]} + {splits.test.shape[1]} images "
          f"(drawn in {t_split:.2f} s); {args.draws} draws per split below the full size; "
          f"{len(alphas)} alphas; one BLAS thread")
    total = {"ours": 0.0, "sklearn": 0.0}
    ours_t, sk_t = {}, {}
    worst, same_alpha, problems = 0.0, 0, 0
    jobs = []
    for name, X in pops.items():
        X64 = X.astype(np.float64)  # cortexzoo computes in float64 from float32 features
        grid = unit_grid(X.shape[1], DecodeConfig(grid_points=args.grid_points))
        t_o = t_s = 0.0
        for k in grid:
            t0 = time.perf_counter()
            res = decode_population(X, splits, k, args.draws, 0, name, alphas, timings=ours_t,
                                    return_units=True)
            t1 = time.perf_counter()
            acc, alpha = sklearn_unit(X64, splits, res["units"], alphas, sk_t)
            t2 = time.perf_counter()
            t_o += t1 - t0
            t_s += t2 - t1
            worst = max(worst, float(np.abs(acc - res["acc"]).max()))
            same_alpha += int((alpha == res["alpha"]).sum())
            problems += alpha.size
            jobs.append((name, X, k))
        total["ours"] += t_o
        total["sklearn"] += t_s
        n_fits = sum(args.splits * (1 if k == X.shape[1] else args.draws) for k in grid)
        print(f"\n{name}: grid {grid}, {n_fits} fits")
        print(f"  cortexzoo   {t_o:8.2f} s  ({1e3 * t_o / n_fits:.2f} ms per fit)")
        print(f"  scikit-learn{t_s:8.2f} s  ({1e3 * t_s / n_fits:.2f} ms per fit)")
        print(f"  ratio       {t_s / t_o:8.1f}x")
    print(f"\nin all: cortexzoo {total['ours']:.1f} s, scikit-learn {total['sklearn']:.1f} s, "
          f"ratio {total['sklearn'] / total['ours']:.1f}x")
    print("where cortexzoo's time goes: " + ", ".join(
        f"{k} {v:.1f} s ({100 * v / sum(ours_t.values()):.0f}%)" for k, v in ours_t.items()))
    print("where scikit-learn's time goes: " + ", ".join(
        f"{k} {v:.1f} s ({100 * v / sum(sk_t.values()):.0f}%)" for k, v in sk_t.items()))
    print(f"agreement: max |accuracy difference| {worst:.1e} over every split, draw and domain; "
          f"same alpha in {same_alpha}/{problems} problems")
    if args.ray:
        _ray(jobs, splits, args, alphas, total["ours"])
    return 0


def _ray(jobs, splits, args, alphas, serial):
    import tempfile

    from cortexzoo.core.raysetup import init_ray
    from cortexzoo.decode.engine import UnitRunner
    from cortexzoo.store import ResultStore

    ray = init_ray(None)
    cpus = ray.cluster_resources().get("CPU", 1)
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(tmp)
        runner = UnitRunner("ray", splits, args.draws, 0, alphas, store, progress=False)
        refs = {}
        t0 = time.perf_counter()
        for name, X, k in jobs:
            if name not in refs:
                refs[name] = runner.put(X)
            runner.submit([{"X": refs[name], "k": k, "unit_key": f"u{len(runner._pending)}-{k}",
                            "population": {"name": name, "kind": "bench", "key": name, "size": X.shape[1]},
                            "common": {"run_id": "bench", "dataset": "bench", "region": "", "model": name,
                                       "source": "bench", "weights": "none", "layer": name,
                                       "relative_depth": np.nan, "reduction": "units",
                                       "split": "2afc-seeded", "method": "decode_2afc",
                                       "metric": "acc_2afc", "ceiling": np.nan, "n_neuroids": 0,
                                       "seed": 0}}])
        runner.wait()
        runner.close()
        wall = time.perf_counter() - t0
    print(f"\nRay tasks ({cpus:.0f} CPUs, each unit a task writing its score file): {wall:.1f} s wall, "
          f"{serial / wall:.2f}x the serial cortexzoo time")


if __name__ == "__main__":
    sys.exit(main())
