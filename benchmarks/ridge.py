"""Benchmark: cortexzoo RidgeGCV vs scikit-learn RidgeCV (and himalaya), LOO ridge per neuroid.

    python benchmarks/ridge.py            # the four shapes of issue 6 (several minutes)
    python benchmarks/ridge.py --quick    # a tiny shape only

Methods: ``cortexzoo-<backend>-<dtype>`` is ``RidgeGCV.fit`` (the full estimator,
including coef_ [t, p]); ``cortexzoo-loo-<backend>-<dtype>`` is ``GCVSolver(X).loo(Y)``,
the scan's path (LOO predictions, r, EV and alpha per neuroid; no coefficients).

Every (shape, method) runs in its own subprocess so that peak memory is that method's
alone. Peak memory is the largest resident set size above the process's size just
before the fit (after imports and after X and Y exist), sampled every 2 ms from
/proc/self/statm (tracemalloc does not see torch); reported as a multiple of
nbytes(X) + nbytes(Y) in float64.

Agreement: max |LOO prediction difference| between cortexzoo float64 (numpy) and
scikit-learn (sklearn's LOO values come from a second, untimed RidgeCV run with
store_cv_results on the first <= 500 neuroids; with alpha per target the neuroids
are independent, so a subset gives the same values); fraction of neuroids with the
same alpha in sklearn and cortexzoo, and in float32 and float64; max |delta Pearson r|
of float32 vs float64.

himalaya's RidgeCV / KernelRidgeCV select alpha by 5-fold CV (it has no closed-form
LOO), so they are timed only (a different, cheaper-to-score method; no agreement).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

SHAPES = [(2000, 4096, 6000), (1000, 4096, 1000), (640, 4096, 50), (2000, 512, 6000)]
QUICK = [(200, 300, 100)]
N_ALPHAS = 17
AGREE_T = 500


def make_data(n: int, p: int, t: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features with a decaying spectrum and neuroids of varying signal-to-noise."""
    rng = np.random.default_rng(seed)
    k = min(n, p, 64)
    latent = rng.normal(size=(n, k))
    X = latent @ rng.normal(size=(k, p)) / np.sqrt(k) + 0.5 * rng.normal(size=(n, p)) + 0.3
    W = rng.normal(size=(k, t))
    snr = np.logspace(-1.5, 0.5, t)
    rng.shuffle(snr)
    Y = latent @ W / np.sqrt(k) * snr + rng.normal(size=(n, t)) + 2.0
    return X, Y


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Sample the resident set size in a thread; peak above the starting size."""

    def __enter__(self) -> "PeakRSS":
        self.base = _rss_bytes()
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_bytes())

    @property
    def extra(self) -> int:
        return self.peak - self.base


def worker(method: str, n: int, p: int, t: int, out: str) -> None:
    """Run one method on one shape; write timing, memory and results to `out` (npz)."""
    alphas = np.logspace(-2, 6, N_ALPHAS)
    import torch  # noqa: F401  (imported by every worker: the same baseline for all)
    import sklearn.linear_model as sklm

    from cortexzoo.mapping import RidgeGCV

    X, Y = make_data(n, p, t)
    Xw, Yw = make_data(40, 60, 3, seed=1)   # warm-up fits: lazy imports and library init
    Xw2, Yw2 = make_data(60, 40, 3, seed=1)
    res: dict[str, np.ndarray] = {}
    if method == "sklearn":
        est = sklm.RidgeCV(alphas=alphas, alpha_per_target=True)
        est.fit(Xw, Yw).fit(Xw2, Yw2)
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            est.fit(X, Y)
            dt = time.perf_counter() - t0
        res["alpha"] = np.asarray(est.alpha_)
        # untimed: sklearn's LOO predictions for a subset of neuroids (see module doc)
        ta = min(t, AGREE_T)
        sk2 = sklm.RidgeCV(alphas=alphas, alpha_per_target=True, store_cv_results=True,
                           scoring="neg_mean_squared_error").fit(X, Y[:, :ta])
        idx = np.searchsorted(alphas, sk2.alpha_)
        res["loo_subset"] = sk2.cv_results_[:, np.arange(ta), idx]
    elif method.startswith("cortexzoo-loo"):
        from cortexzoo.mapping import GCVSolver

        _, _, backend, dtype = method.split("-")
        GCVSolver(Xw, alphas, backend=backend, dtype=dtype).loo(Yw)
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            r = GCVSolver(X, alphas, backend=backend, dtype=dtype).loo(Y)
            dt = time.perf_counter() - t0
        res["alpha"] = r.alpha
        res["pearson"] = r.pearson.astype(np.float64)
        res["loo_subset"] = r.loo_predictions[:, :min(t, AGREE_T)].astype(np.float64)
    elif method.startswith("cortexzoo"):
        _, backend, dtype = method.split("-")
        est = RidgeGCV(alphas=alphas, backend=backend, dtype=dtype)
        est.fit(Xw, Yw).fit(Xw2, Yw2)
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            est.fit(X, Y)
            dt = time.perf_counter() - t0
        res["alpha"] = np.asarray(est.alpha_)
        res["pearson"] = est.loo_pearson_.astype(np.float64)
        res["loo_subset"] = est.loo_predictions_[:, :min(t, AGREE_T)].astype(np.float64)
        res["mode"] = np.array(est.mode_)
    elif method.startswith("himalaya"):
        from himalaya.backend import set_backend
        from himalaya.kernel_ridge import KernelRidgeCV
        from himalaya.ridge import RidgeCV as HRidgeCV

        set_backend("numpy", on_error="raise")
        if method == "himalaya-ridge":
            est = HRidgeCV(alphas=alphas, fit_intercept=True, cv=5)
        else:
            est = KernelRidgeCV(alphas=alphas, kernel="linear", fit_intercept=True, cv=5)
        est.fit(Xw, Yw).fit(Xw2, Yw2)
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            est.fit(X, Y)
            dt = time.perf_counter() - t0
        res["alpha"] = np.asarray(est.best_alphas_)
    else:
        raise ValueError(f"unknown method {method!r}")
    np.savez(out, time=dt, extra=mem.extra, data_bytes=X.nbytes + Y.nbytes, **res)


def run_one(method: str, n: int, p: int, t: int, timeout: int) -> dict | None:
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "r.npz")
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", method,
               str(n), str(p), str(t), out]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"  {method}: timed out after {timeout} s", flush=True)
            return None
        if proc.returncode != 0:
            print(f"  {method}: failed\n{proc.stderr[-2000:]}", flush=True)
            return None
        z = np.load(out)
        return {k: z[k] for k in z.files}


COLS = ["n", "p", "t", "method", "time_s", "speedup_vs_sklearn", "peak_extra_MiB",
        "peak_over_XY", "max_abs_loo_diff_vs_sklearn", "same_alpha_as_sklearn",
        "same_alpha_as_f64", "max_abs_dr_vs_f64"]


def _print_table(rows: list[dict]) -> None:
    print("| " + " | ".join(COLS) + " |")
    print("|" + "---|" * len(COLS))
    for row in rows:
        cells = []
        for c in COLS:
            v = row.get(c, "")
            if isinstance(v, float):
                v = f"{v:.3g}" if (abs(v) < 1e-2 and v != 0) else f"{v:.2f}"
            cells.append(str(v))
        print("| " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a tiny shape only")
    ap.add_argument("--no-himalaya", action="store_true")
    ap.add_argument("--shapes", default=None,
                    help="comma-separated n:p:t shapes instead of the defaults, e.g. 1000:4096:1000")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per method and shape")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        m, n, p, t, out = args.worker
        worker(m, int(n), int(p), int(t), out)
        return

    import torch

    shapes = QUICK if args.quick else SHAPES
    if args.shapes:
        shapes = [tuple(int(v) for v in sh.split(":")) for sh in args.shapes.split(",")]
    methods = ["sklearn", "cortexzoo-numpy-float64", "cortexzoo-torch-float64",
               "cortexzoo-numpy-float32", "cortexzoo-torch-float32",
               "cortexzoo-loo-torch-float64", "cortexzoo-loo-torch-float32"]
    print(f"# cores={os.cpu_count()} torch threads={torch.get_num_threads()} "
          f"alphas={N_ALPHAS} (logspace(-2, 6))", flush=True)
    rows = []
    for n, p, t in shapes:
        ms = list(methods)
        if not args.no_himalaya:
            ms.append("himalaya-ridge")
            if p > n:
                ms.append("himalaya-kernel")
        print(f"== n={n} p={p} t={t} (load average {os.getloadavg()[0]:.1f})", flush=True)
        results = {}
        for m in ms:
            r = run_one(m, n, p, t, args.timeout)
            if r is not None:
                results[m] = r
                print(f"  {m}: {float(r['time']):.2f} s, peak +{float(r['extra']) / 2**20:.0f} MiB",
                      flush=True)
        sk = results.get("sklearn")
        ref64 = results.get("cortexzoo-numpy-float64")
        for m, r in results.items():
            row = {"n": n, "p": p, "t": t, "method": m, "time_s": float(r["time"]),
                   "peak_extra_MiB": float(r["extra"]) / 2**20,
                   "peak_over_XY": float(r["extra"]) / float(r["data_bytes"])}
            if sk is not None:
                row["speedup_vs_sklearn"] = float(sk["time"]) / float(r["time"])
            if m.startswith("cortexzoo") and sk is not None:
                row["max_abs_loo_diff_vs_sklearn"] = float(
                    np.abs(r["loo_subset"] - sk["loo_subset"]).max())
                row["same_alpha_as_sklearn"] = float(np.mean(r["alpha"] == sk["alpha"]))
            if m.startswith("cortexzoo") and ref64 is not None:
                row["same_alpha_as_f64"] = float(np.mean(np.isclose(r["alpha"], ref64["alpha"])))
                row["max_abs_dr_vs_f64"] = float(np.nanmax(np.abs(r["pearson"] - ref64["pearson"])))
            if "mode" in r:
                row["mode"] = str(r["mode"])
            rows.append(row)
        _print_table([r for r in rows if (r["n"], r["p"], r["t"]) == (n, p, t)])
        if args.json:   # keep what is done so far
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)
    print(f"# load average at the end: {os.getloadavg()[0]:.1f} (timings are only comparable "
          f"on an otherwise idle machine)")
    print()
    _print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
