"""A decoding run, from a dataset folder to scores, tables and plots (``cortexzoo decode``).

1. Load the dataset, resolve the training and test domains, draw the splits (seeded,
   stratified; errors name the domain and category that lack images) and store them.
2. Build the populations: every recorded region, then each model's chosen layer (Ray Data
   extraction, or the feature cache). Each population's curve units ((population, k) for
   k on its log grid) are submitted as Ray tasks as soon as its features exist, so models
   are extracted while earlier populations decode.
3. Read the curves back, find each model's matched count against the reference's
   in-domain accuracy, decode the matched counts not on the grid (same splits).
4. Write the tables under ``decode/<decode_key>/`` and the plots under ``plots/``.

A unit is done when its score file exists: a rerun with the same ``out`` and settings
decodes only the missing units (and re-extracts nothing that the feature cache holds).
"""
from __future__ import annotations

import hashlib
import json
import logging
import socket
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..core.cache_key import canonical_json, safe_key
from ..core.uri import normalize_uri
from ..data import load_dataset
from ..features.cache import FeatureCache
from ..store import ResultStore, package_versions
from ..zoo import parse_spec
from . import analysis
from .config import DecodeConfig
from .engine import METHOD, METRIC, UnitRunner
from .populations import (Population, PopulationError, describe_layer, model_population,
                          recorded_populations, resolve_layers)
from .splits import draw_splits, resolve_domains

__all__ = ["run_decode", "DecodeResult", "unit_grid", "DECODE_VERSION"]

log = logging.getLogger("cortexzoo")

#: Part of every unit key: bump when decoding changes the numbers.
DECODE_VERSION = "1"


@dataclass
class DecodeResult:
    run_id: str
    out: str
    decode_key: str
    scores: pd.DataFrame
    scaling: pd.DataFrame
    matched: pd.DataFrame
    tests: pd.DataFrame
    log_fits: pd.DataFrame
    extrapolation: pd.DataFrame
    reference: str
    reference_accuracy: float
    written_units: int
    skipped_units: int
    plots: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)


def unit_grid(size: int, cfg: DecodeConfig) -> list[int]:
    """The unit counts of a population of ``size``: ``cfg.k_grid`` (up to ``size``) or
    ``cfg.grid_points`` counts spaced evenly on a log scale from ``k_min``; ``size`` is
    always included."""
    if cfg.k_grid is not None:
        ks = [k for k in cfg.k_grid if k < size]
    else:
        lo = min(cfg.k_min, size)
        ks = np.unique(np.round(np.geomspace(lo, size, cfg.grid_points)).astype(int)).tolist()
    return sorted(set(int(k) for k in ks if k >= 1) | {int(size)})


def _stimuli_digest(dataset) -> str:
    """The stimuli as the splits see them: the image set and the whole stimulus table
    (domains, categories, groups). Responses are not in it: a recorded population's key
    hashes its own responses, so a stimulus set and the same set with recordings share
    their model units."""
    st = dataset.stimuli
    text = st.to_csv(index=False, lineterminator="\n") + json.dumps([str(t) for t in st.dtypes])
    return hashlib.sha256((dataset.stimulus_fingerprint() + text).encode()).hexdigest()


def _decode_key(stimuli: str, cfg: DecodeConfig, train: str, tests: list[str]) -> str:
    """What every unit's numbers depend on besides its population and k: the stimuli,
    the domains, the split settings, the draws, the alpha grid, the seed and this code."""
    parts = cfg.key_parts()
    parts.update(train_domain=train, test_domains=tests, stimuli=stimuli,
                 version=DECODE_VERSION)
    digest = hashlib.sha256(canonical_json(parts).encode()).hexdigest()[:16]
    return safe_key("decode", train, digest)


def _pick_reference(cfg: DecodeConfig, recorded: list[Population], models: list[str]) -> str:
    names = [p.name for p in recorded] + models
    if cfg.reference is not None:
        ref = cfg.reference
        if ref not in names:
            try:
                ref = str(parse_spec(ref))
            except ValueError:
                pass
        if ref not in names:
            raise PopulationError(f"reference {cfg.reference!r} is neither a decoded region nor "
                                  f"a decoded model; populations: {names}")
        return ref
    if any(p.name == "IT" for p in recorded):
        return "IT"
    if recorded:
        return recorded[0].name
    if models:
        log.warning("no recorded population: the models' unit counts are matched to the first "
                    "model, %s (choose with --reference or --reference-accuracy)", models[0])
        return models[0]
    raise PopulationError("nothing to decode: the dataset has no recorded population and no "
                          "model was given (--models)")


def _common(run_id: str, dataset, pop: Population, decode_key: str, cfg: DecodeConfig,
            train: str) -> dict:
    """Fields of every row of a population's units. Nothing here depends on the run's
    reference or other populations: a unit is shared by every run with the same stimuli,
    settings and population (``region`` is empty for a model population)."""
    return {"run_id": run_id, "dataset": dataset.name,
            "region": pop.region if pop.kind == "recorded" else "",
            "model": pop.model, "source": pop.source, "weights": pop.weights, "layer": pop.layer,
            "relative_depth": pop.relative_depth, "reduction": pop.reduction, "method": METHOD,
            "metric": METRIC, "ceiling": float("nan"), "split": "2afc-seeded",
            "seed": int(pop.seed), "population": pop.name, "population_kind": pop.kind,
            "train_domain": train, "n_train": cfg.splits.n_train,
            "split_seed": cfg.splits.seed, "decode_key": decode_key, "population_key": pop.key,
            "n_neuroids": 0}


def run_decode(cfg: DecodeConfig) -> DecodeResult:
    """Run the decoding analysis of ``cfg`` (module docstring)."""
    t0 = time.time()
    run_id = cfg.run_id or time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    if not cfg.data:
        raise ValueError("decode needs a dataset folder (--data)")
    dataset = load_dataset(cfg.data)
    train, tests = resolve_domains(dataset.stimuli, cfg.train_domain, cfg.test_domains,
                                   dataset.meta, where=f"dataset {dataset.name!r}")
    splits = draw_splits(dataset.stimuli, cfg.splits, train, tests)
    specs = []
    for m in cfg.models or []:
        s = parse_spec(m)
        if str(s) not in [str(x) for x in specs]:
            specs.append(s)
    models = [str(s) for s in specs]
    layers = resolve_layers(models, cfg.layers)
    described = {m: describe_layer(s, layers[m], cfg) for m, s in zip(models, specs)}  # checks first
    recorded = recorded_populations(dataset, cfg)
    reference = _pick_reference(cfg, recorded, models)
    store = ResultStore(normalize_uri(cfg.out))  # absolute: Ray tasks write to it from anywhere
    fingerprint = dataset.fingerprint()
    key = _decode_key(_stimuli_digest(dataset), cfg, train, tests)
    manifest = {"run_id": run_id, "kind": "decode", "config": cfg.to_dict(), "data_uri": cfg.data,
                "dataset": dataset.name, "dataset_fingerprint": fingerprint, "decode_key": key,
                "train_domain": train, "test_domains": tests, "classes": splits.classes,
                "models": models, "reference": reference, "versions": package_versions(),
                "host": socket.gethostname(), "started_at": pd.Timestamp.now("UTC").isoformat()}
    store.write_manifest(run_id, manifest)
    base = f"decode/{key}"
    store.put_array(f"{base}/splits_train.npy", splits.train)
    store.put_array(f"{base}/splits_test.npy", splits.test)
    store.put_json(f"{base}/splits.json", {"domains": splits.domains, "classes": splits.classes,
                                           "test_domain": splits.test_domain.tolist(),
                                           "stimulus_id": dataset.stimuli["stimulus_id"].astype(str).tolist()})
    log.info("decode %s: %s, train on %r (%d classes), test on %d domains, %d splits; "
             "populations: %s -> %s", run_id, dataset.name, train, len(splits.classes), len(tests),
             splits.n_splits, [p.name for p in recorded] + models, cfg.out)

    done = store.completed_units()
    cache = FeatureCache(store, dataset.stimulus_fingerprint(), dataset.n_stimuli) \
        if cfg.cache_features else None
    runner = UnitRunner(cfg.engine, splits, cfg.draws, cfg.seed, cfg.alphas, store,
                        progress=cfg.progress, address=cfg.address)
    pops: dict[str, Population] = {}
    handles: dict[str, object] = {}
    grids: dict[str, list[int]] = {}
    counts = {"written": 0, "skipped": 0}

    all_units: list[str] = []  # this analysis' units, compacted at the end

    def submit(pop: Population, ks: list[int]) -> None:
        common = _common(run_id, dataset, pop, key, cfg, train)
        jobs = []
        for k in ks:
            uk = safe_key(key, pop.name, pop.layer, k, pop.key)
            all_units.append(uk)
            if uk in done:
                counts["skipped"] += 1
                continue
            c = dict(common, n_neuroids=int(k) if pop.kind == "recorded" else 0)
            jobs.append({"X": handles[pop.name], "k": int(k), "population": pop.meta(),
                         "unit_key": uk, "common": c})
            done.add(uk)
        counts["written"] += len(jobs)
        runner.submit(jobs)

    def add(pop: Population) -> None:
        pops[pop.name] = pop
        handles[pop.name] = runner.put(pop.X)
        grids[pop.name] = unit_grid(pop.size, cfg)
        submit(pop, grids[pop.name])

    try:
        for pop in recorded:
            add(pop)
        for spec in specs:  # decoding of earlier populations runs while this one extracts
            add(model_population(spec, layers[str(spec)], dataset, cfg, store, cache,
                                 described[str(spec)]))
        runner.wait()
        scores = _read(store, key, pops)
        curve = analysis.curves(scores)
        summary = analysis.ood_mean(curve)
        ref_pop = pops[reference]
        ref_row = summary[(summary["population"] == reference) & (summary["k_units"] == ref_pop.size)]
        measured = float(ref_row["in_domain"].iloc[0])
        ref_acc = float(cfg.reference_accuracy) if cfg.reference_accuracy is not None else measured
        others = [p for p in pops if p != reference]  # recorded regions and models alike
        # the search runs on the grid alone (a matched count decoded before is no grid point)
        on_grid = np.array([k in grids[p] for p, k in zip(curve["population"], curve["k_units"])],
                           dtype=bool)
        scaling = analysis.scaling_table(curve[on_grid], reference, ref_pop.size, ref_acc, others)
        for r in scaling.itertuples():
            if r.reached and r.k_used not in grids[r.population]:
                submit(pops[r.population], [int(r.k_used)])  # the same splits
            elif not r.reached:
                log.warning("%s never reaches the reference's in-domain accuracy %.3f (%.3f with "
                            "all %d units): no matched count", r.population, ref_acc,
                            json.loads(r.curve)[-1][1], r.n_units)
        runner.wait()
    finally:
        runner.close()
    scores = _read(store, key, pops)
    curve = analysis.curves(scores)
    summary = analysis.ood_mean(curve)
    matched = analysis.matched_table(curve, scaling, reference, ref_pop.size)
    tests_df = analysis.model_tests(matched, reference, others)
    fits = analysis.log_fits(curve)
    extra = analysis.extrapolations(scaling, fits, summary, reference)
    # the analysis depends on the populations and the reference: its own folder
    analysis_id = safe_key(_short(reference), hashlib.sha256(canonical_json(
        {"populations": sorted(p.key for p in pops.values()), "reference": reference,
         "reference_accuracy": cfg.reference_accuracy}).encode()).hexdigest()[:12])
    tables_dir = f"{base}/{analysis_id}"
    tables = {"curves": curve, "scaling": scaling, "matched": matched, "tests": tests_df,
              "logfit": fits, "extrapolation": extra}
    for name, df in tables.items():
        store.put_bytes(f"{tables_dir}/{name}.csv", df.to_csv(index=False).encode())
    plots = {}
    if cfg.plot and len(curve):
        from .plots import plot_domains, plot_units

        figs = {"domains": plot_domains(matched, reference, splits.domains),
                "units": plot_units(curve, scaling, fits, reference, ref_acc)}
        for name, png in figs.items():  # the latest run's under plots/, each analysis' with it
            store.put_bytes(f"{tables_dir}/decode-{name}.png", png)
            store.put_bytes(f"plots/decode-{name}.png", png)
        plots = {n: store.uri_of("plots", f"decode-{n}.png") for n in figs}
    written, skipped = counts["written"], counts["skipped"]
    info = {"seconds": round(time.time() - t0, 3), "units_written": written,
            "units_skipped": skipped, "reference": reference, "reference_accuracy": ref_acc,
            "reference_measured_accuracy": measured, "train_domain": train, "test_domains": tests,
            "classes": splits.classes, "populations": {n: p.size for n, p in pops.items()}}
    info["tables"] = store.uri_of(tables_dir)
    store.put_json(f"{tables_dir}/summary.json", info)
    store.compact(units=all_units, run_id=run_id)  # a few large files per run
    manifest.update(finished_at=pd.Timestamp.now("UTC").isoformat(), summary=info)
    store.write_manifest(run_id, manifest)
    log.info("decode %s done in %.1f s: %d units decoded, %d already done; tables in %s",
             run_id, info["seconds"], written, skipped, info["tables"])
    return DecodeResult(run_id, cfg.out, key, scores, scaling, matched, tests_df, fits, extra,
                        reference, ref_acc, written, skipped, plots, info)


def _short(name: str) -> str:
    return name.split(":", 1)[-1].split("@")[0] + ("-random" if "@random" in name else "")


def _read(store: ResultStore, key: str, pops: dict[str, Population]) -> pd.DataFrame:
    """This run's rows: its decode key and the current populations' features."""
    df = store.read_scores(filters=[("method", "==", METHOD)])
    if "decode_key" not in df.columns or "population_key" not in df.columns:
        return df.iloc[:0]
    keys = {p.key for p in pops.values()}
    return df[(df["decode_key"] == key) & df["population_key"].isin(keys)].reset_index(drop=True)
