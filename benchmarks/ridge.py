"""Benchmark: cortexzoo RidgeGCV vs scikit-learn RidgeCV (and himalaya), LOO ridge per neuroid.

    python benchmarks/ridge.py            # the four shapes of issue 6 (20-40 minutes)
    python benchmarks/ridge.py --quick    # a tiny shape only
    python benchmarks/ridge.py --shapes 640:4096:50 --threads 1 \
        --methods sklearn,cortexzoo-numpy-float64

Prints, per shape, one row per method (time, speedup over scikit-learn, peak memory,
agreement) and at the end the same table for all shapes plus a one-line-per-shape
summary (speedups of float64 / float32 on both backends, himalaya, peak memory over
X + Y of the solver path and of the estimator, max LOO difference from scikit-learn,
float32's alpha agreement and max |delta r| with float64).

Methods: ``cortexzoo-<backend>-<dtype>`` is ``RidgeGCV.fit`` followed by reading
``coef_`` [t, p] (the full estimator with the same outputs as scikit-learn's fit; in dual
form RidgeGCV forms coef_ only on first access, so its fit alone is also timed and its
peak memory recorded: ``fit_s``, ``fit_peak_over_XY``);
``cortexzoo-loo-<backend>-<dtype>`` is ``GCVSolver(X).loo(Y)``,
the scan's path (LOO predictions, r, EV and alpha per neuroid; no coefficients).
``<backend>`` is numpy, torch (CPU) or cuda (the torch backend on the first GPU; added
to the default methods when torch sees one). GPU times are end to end: X and Y start as
numpy arrays on the host and the results come back to it; ``gpu_peak_over_XY`` is
torch's peak allocated GPU memory over X + Y.

Every (shape, method) runs in its own subprocess so that peak memory is that method's
alone. Peak memory is the largest resident set size (RSS) above the process's size just
before the fit (after imports and after X and Y exist), sampled every 2 ms by a thread
reading /proc/self/statm (tracemalloc would miss torch and LAPACK workspaces); reported
as a multiple of nbytes(X) + nbytes(Y) in float64 (``peak_over_XY``). It includes the
outputs (LOO predictions [n, t]; coefficients [t, p] for the estimators). Before each
sampled run the previous run's memory is handed back to the OS (``malloc_trim``), so
that its peak does not include what the allocator kept from an earlier one.

Timing: time and memory come from different runs, as the sampling thread slows a
sub-second fit by 10-15% on 2 cores. The first run is sampled (``first_s``: cold, fresh
allocations and thread pools); a method whose first run took 10 s or more runs only
once. Otherwise it is timed unsampled ``--repeat`` times (default 3; fewer once its runs
took 10 s in all), then run ``--repeat - 1`` more times sampled; ``time_s`` is the
fastest timed run (steady state) and speedups use it; the peak is the worst sampled run.

``--threads N`` pins every BLAS / OpenMP pool and torch to N threads in every method:
on a machine shared with other jobs, multi-threaded BLAS (syevd above all) can run
10-100x slower when its spinning threads are descheduled; one thread is far steadier.

Agreement: max |LOO prediction difference| between each cortexzoo method and
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
from typing import Any

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
        self._lock = threading.Lock()   # a reset must not be undone by a sample in flight
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(0.002)

    def sample(self) -> int:
        """Take one sample now; returns the peak so far."""
        with self._lock:
            self.peak = max(self.peak, _rss_bytes())
            return self.peak

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.sample()

    def reset(self) -> None:
        """Start a new peak from the current size (the base stays)."""
        with self._lock:
            self.peak = _rss_bytes()

    @property
    def extra(self) -> int:
        return self.peak - self.base


def _release_freed_memory() -> None:
    """Hand memory freed by the previous run back to the OS (glibc keeps freed heap
    chunks, and raises its mmap threshold after large frees, so without this a repeated
    run's RSS peak would include the previous run's garbage)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):   # not glibc
        pass


def _timed(make, X: np.ndarray, Y: np.ndarray, repeat: int, then=None
           ) -> tuple[Any, float, float, int, int, dict]:
    """Fit make() on X, Y, each fit followed by ``then(est)`` (timed with it) when given.

    Memory and time come from different runs: the 2 ms sampling thread takes 10-15% from
    a sub-second multithreaded fit on 2 cores (nothing measurable from a 2 s one). The
    first run is sampled; if it took 10 s or more it is also the only timed run. Else
    the method runs up to ``repeat`` times unsampled (while under 10 s in all) for the
    time, then ``repeat - 1`` more times sampled for the worst peak. Before each sampled
    run the previous estimator is dropped and freed memory handed back to the OS, so
    that neither its outputs nor what the allocator kept count in the peak.

    Returns the last fitted estimator, the fastest and the first time, the number of
    timed runs, the peak memory above the pre-fit size (worst sampled run) and, with
    ``then``, the fastest fit alone (``fit_s``) and the worst peak of the fits alone
    (``fit_extra``).
    """
    def one(sampled: bool) -> tuple[Any, float, float, int, int]:
        """(estimator, time, fit time, peak extra, fit-alone peak extra) of one run."""
        if not sampled:
            t0 = time.perf_counter()
            est = make().fit(X, Y)
            t_fit = time.perf_counter() - t0
            if then is not None:
                then(est)
            return est, time.perf_counter() - t0, t_fit, 0, 0
        _release_freed_memory()
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            est = make().fit(X, Y)
            t_fit = time.perf_counter() - t0
            fit_peak = mem.sample() - mem.base
            if then is not None:
                then(est)
            t_all = time.perf_counter() - t0
        return est, t_all, t_fit, mem.extra, fit_peak

    est, first, first_fit, extra, fit_extra = one(sampled=True)
    times, fit_times = [first], [first_fit]
    if first < 10.0:
        times, fit_times = [], []
        while len(times) < repeat and sum(times) < 10.0:
            est = None
            est, t, tf, _, _ = one(sampled=False)
            times.append(t)
            fit_times.append(tf)
        for _ in range(repeat - 1):
            est = None
            est, _, _, e, fe = one(sampled=True)
            extra, fit_extra = max(extra, e), max(fit_extra, fe)
    fit = {"fit_s": min(fit_times), "fit_extra": fit_extra} if then is not None else {}
    return est, min(times), first, len(times), extra, fit


class _Loo:
    """GCVSolver(X).loo(Y) with an estimator's face, for _timed."""

    def __init__(self, alphas: np.ndarray, backend: str, dtype: str) -> None:
        self.args = (alphas, backend, dtype)

    def fit(self, X: np.ndarray, Y: np.ndarray) -> "_Loo":
        from cortexzoo.mapping import GCVSolver

        alphas, backend, dtype = self.args
        backend, device = _backend_device(backend)
        self.result_ = GCVSolver(X, alphas, backend=backend, dtype=dtype,
                                 device=device).loo(Y)
        return self


def _backend_device(name: str) -> tuple[str, str | None]:
    """A method's backend word -> (RidgeGCV backend, device)."""
    return ("torch", "cuda") if name == "cuda" else (name, None)


def worker(method: str, n: int, p: int, t: int, out: str, repeat: int = 3,
           threads: int = 0) -> None:
    """Run one method on one shape; write timing, memory and results to `out` (npz)."""
    alphas = np.logspace(-2, 6, N_ALPHAS)
    import torch  # (imported by every worker: the same baseline for all)
    import sklearn.linear_model as sklm

    if threads > 0:   # the same thread count for every BLAS / OpenMP pool and for torch
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
        torch.set_num_threads(threads)

    from cortexzoo.mapping import RidgeGCV

    X, Y = make_data(n, p, t)
    cuda = "-cuda-" in method
    Xw, Yw = make_data(40, 60, 3, seed=1)   # warm-up fits: lazy imports and library init
    Xw2, Yw2 = make_data(60, 40, 3, seed=1)
    res: dict[str, np.ndarray] = {}
    if method == "sklearn":
        make = lambda: sklm.RidgeCV(alphas=alphas, alpha_per_target=True)  # noqa: E731
        make().fit(Xw, Yw).fit(Xw2, Yw2)
        est, dt, first, runs, extra, _ = _timed(make, X, Y, repeat)
        res["alpha"] = np.asarray(est.alpha_)
        # untimed: sklearn's LOO predictions for a subset of neuroids (see module doc)
        ta = min(t, AGREE_T)
        sk2 = sklm.RidgeCV(alphas=alphas, alpha_per_target=True, store_cv_results=True,
                           scoring="neg_mean_squared_error").fit(X, Y[:, :ta])
        idx = np.searchsorted(alphas, sk2.alpha_)
        res["loo_subset"] = sk2.cv_results_[:, np.arange(ta), idx]
    elif method.startswith("cortexzoo-loo"):
        _, _, backend, dtype = method.split("-")
        _Loo(alphas, backend, dtype).fit(Xw, Yw)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        est, dt, first, runs, extra, _ = _timed(lambda: _Loo(alphas, backend, dtype), X, Y,
                                              repeat)
        r = est.result_
        res["n_refined"] = np.asarray(r.n_refined)
        res["alpha"] = r.alpha
        res["pearson"] = r.pearson.astype(np.float64)
        res["loo_subset"] = r.loo_predictions[:, :min(t, AGREE_T)].astype(np.float64)
    elif method.startswith("cortexzoo"):
        _, backend, dtype = method.split("-")
        be, device = _backend_device(backend)
        make = lambda: RidgeGCV(alphas=alphas, backend=be, dtype=dtype,  # noqa: E731
                                device=device)
        make().fit(Xw, Yw).fit(Xw2, Yw2)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        est, dt, first, runs, extra, fit = _timed(make, X, Y, repeat, then=lambda e: e.coef_)
        res.update({k: np.asarray(v) for k, v in fit.items()})
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
            make = lambda: HRidgeCV(alphas=alphas, fit_intercept=True, cv=5)  # noqa: E731
        else:
            make = lambda: KernelRidgeCV(alphas=alphas, kernel="linear",  # noqa: E731
                                         fit_intercept=True, cv=5)
        make().fit(Xw, Yw).fit(Xw2, Yw2)
        est, dt, first, runs, extra, _ = _timed(make, X, Y, repeat)
        res["alpha"] = np.asarray(est.best_alphas_)
    else:
        raise ValueError(f"unknown method {method!r}")
    if cuda:
        res["gpu_peak"] = np.asarray(torch.cuda.max_memory_allocated())
    np.savez(out, time=dt, first=first, runs=runs, extra=extra,
             data_bytes=X.nbytes + Y.nbytes, **res)


def run_one(method: str, n: int, p: int, t: int, timeout: int, repeat: int,
            threads: int) -> dict | None:
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "r.npz")
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", method,
               str(n), str(p), str(t), out, str(repeat), str(threads)]
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


COLS = ["n", "p", "t", "method", "time_s", "first_s", "runs", "speedup_vs_sklearn",
        "fit_s", "peak_extra_MiB", "peak_over_XY", "fit_peak_over_XY", "max_abs_loo_diff_vs_sklearn", "same_alpha_as_sklearn",
        "same_alpha_as_f64", "max_abs_dr_vs_f64", "n_refined", "gpu_peak_over_XY"]


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


def _summary(rows: list[dict]) -> None:
    """One line per shape: speedups over scikit-learn, peak memory, agreement."""
    def get(rs: dict, m: str, k: str, fmt: str = "{:.1f}x") -> str:
        v = rs.get(m, {}).get(k)
        return fmt.format(v) if isinstance(v, (int, float)) else "-"

    print("| (n, p, t) | sklearn | fit+coef_ f64 numpy / torch | fit+coef_ f32 numpy / torch | "
          "loo f64 numpy / torch | loo f32 numpy / torch | himalaya ridge / kernel | "
          "peak/(X+Y) loo / fit / fit+coef_ | "
          "max LOO diff f64 / f32 | f32 same alpha, max dr | GPU loo f64 / f32 |")
    print("|" + "---|" * 11)
    for shape in dict.fromkeys((r["n"], r["p"], r["t"]) for r in rows):
        rs = {r["method"]: r for r in rows if (r["n"], r["p"], r["t"]) == shape}
        sx = "speedup_vs_sklearn"
        loo_peak = max((r["peak_over_XY"] for m, r in rs.items() if m.startswith("cortexzoo-loo")),
                       default=float("nan"))
        est_rows = [r for m, r in rs.items()
                    if m.startswith("cortexzoo-") and not m.startswith("cortexzoo-loo")]
        fit_peak = max((r.get("fit_peak_over_XY", float("nan")) for r in est_rows),
                       default=float("nan"))
        coef_peak = max((r["peak_over_XY"] for r in est_rows), default=float("nan"))
        f32 = [r for m, r in rs.items() if m.startswith("cortexzoo") and m.endswith("float32")]
        same = min((r.get("same_alpha_as_f64", float("nan")) for r in f32), default=float("nan"))
        dr = max((r.get("max_abs_dr_vs_f64", float("nan")) for r in f32), default=float("nan"))
        d64 = max((r.get("max_abs_loo_diff_vs_sklearn", float("nan")) for m, r in rs.items()
                   if m.startswith("cortexzoo") and m.endswith("float64")), default=float("nan"))
        d32 = max((r.get("max_abs_loo_diff_vs_sklearn", float("nan")) for r in f32),
                  default=float("nan"))
        print(f"| {shape} | {get(rs, 'sklearn', 'time_s', '{:.2f} s')} "
              f"| {get(rs, 'cortexzoo-numpy-float64', sx)} / "
              f"{get(rs, 'cortexzoo-torch-float64', sx)} "
              f"| {get(rs, 'cortexzoo-numpy-float32', sx)} / "
              f"{get(rs, 'cortexzoo-torch-float32', sx)} "
              f"| {get(rs, 'cortexzoo-loo-numpy-float64', sx)} / "
              f"{get(rs, 'cortexzoo-loo-torch-float64', sx)} "
              f"| {get(rs, 'cortexzoo-loo-numpy-float32', sx)} / "
              f"{get(rs, 'cortexzoo-loo-torch-float32', sx)} "
              f"| {get(rs, 'himalaya-ridge', sx, '{:.2f}x')} / "
              f"{get(rs, 'himalaya-kernel', sx, '{:.2f}x')} "
              f"| {loo_peak:.2f} / {fit_peak:.2f} / {coef_peak:.2f} | {d64:.1e} / {d32:.1e} | {same:.4f}, {dr:.1e} "
              f"| {get(rs, 'cortexzoo-loo-cuda-float64', sx)} / "
              f"{get(rs, 'cortexzoo-loo-cuda-float32', sx)} |",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a tiny shape only")
    ap.add_argument("--no-himalaya", action="store_true")
    ap.add_argument("--shapes", default=None,
                    help="comma-separated n:p:t shapes instead of the defaults, e.g. 1000:4096:1000")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per method and shape")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--repeat", type=int, default=3,
                    help="timed runs per method while they take under 10 s in all")
    ap.add_argument("--threads", type=int, default=0,
                    help="limit every method to this many BLAS/OpenMP/torch threads "
                         "(default: libraries' defaults); 1 is far steadier on a busy machine")
    ap.add_argument("--methods", default=None,
                    help="comma-separated subset of methods (default: all)")
    ap.add_argument("--worker", nargs=7, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        m, n, p, t, out, rep, thr = args.worker
        worker(m, int(n), int(p), int(t), out, int(rep), int(thr))
        return

    import torch

    shapes = QUICK if args.quick else SHAPES
    if args.shapes:
        shapes = [tuple(int(v) for v in sh.split(":")) for sh in args.shapes.split(",")]
    methods = ["sklearn", "cortexzoo-numpy-float64", "cortexzoo-torch-float64",
               "cortexzoo-numpy-float32", "cortexzoo-torch-float32",
               "cortexzoo-loo-numpy-float64", "cortexzoo-loo-numpy-float32",
               "cortexzoo-loo-torch-float64", "cortexzoo-loo-torch-float32"]
    if torch.cuda.is_available():
        methods += ["cortexzoo-cuda-float64", "cortexzoo-cuda-float32",
                    "cortexzoo-loo-cuda-float64", "cortexzoo-loo-cuda-float32"]
    if args.methods:
        methods = args.methods.split(",")
    print(f"# cores={os.cpu_count()} torch threads={torch.get_num_threads()} "
          f"--threads={args.threads or 'default'} "
          f"alphas={N_ALPHAS} (logspace(-2, 6))", flush=True)
    rows = []
    for n, p, t in shapes:
        ms = list(methods)
        if not args.no_himalaya and not args.methods:
            ms.append("himalaya-ridge")
            if p > n:
                ms.append("himalaya-kernel")
        print(f"== n={n} p={p} t={t} (load average {os.getloadavg()[0]:.1f})", flush=True)
        results = {}
        for m in ms:
            r = run_one(m, n, p, t, args.timeout, args.repeat, args.threads)
            if r is not None:
                results[m] = r
                print(f"  {m}: {float(r['time']):.2f} s (first {float(r['first']):.2f} s, "
                      f"{int(r['runs'])} runs), peak +{float(r['extra']) / 2**20:.0f} MiB",
                      flush=True)
        sk = results.get("sklearn")
        ref64 = results.get("cortexzoo-numpy-float64")
        for m, r in results.items():
            row = {"n": n, "p": p, "t": t, "method": m, "time_s": float(r["time"]),
                   "first_s": float(r["first"]), "runs": int(r["runs"]),
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
            if "fit_s" in r:
                row["fit_s"] = float(r["fit_s"])
                row["fit_peak_over_XY"] = float(r["fit_extra"]) / float(r["data_bytes"])
            if "mode" in r:
                row["mode"] = str(r["mode"])
            if "n_refined" in r:
                row["n_refined"] = int(r["n_refined"])
            if "gpu_peak" in r:
                row["gpu_peak_over_XY"] = float(r["gpu_peak"]) / float(r["data_bytes"])
            rows.append(row)
        _print_table([r for r in rows if (r["n"], r["p"], r["t"]) == (n, p, t)])
        if args.json:   # keep what is done so far
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)
    print(f"# load average at the end: {os.getloadavg()[0]:.1f} (timings are only comparable "
          f"on an otherwise idle machine)")
    print()
    _print_table(rows)
    print()
    _summary(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
