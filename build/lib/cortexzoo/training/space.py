"""YAML search spaces for tuning campaigns (``tune_spaces/*.yaml``) and their schema check.

Schema::

    name: resnet_decoder            # campaign name (default: the file name)
    description: free text
    base: resnet34-it               # preset name or preset YAML: the fixed settings
    fixed: {epochs: 60}             # overrides of the base (any FinetuneConfig key)
    params:                         # searched settings (FinetuneConfig keys)
      dropout:      {type: uniform,    low: 0.2,    high: 0.6}
      lr:           {type: loguniform, low: 1.0e-5, high: 1.0e-3}
      width:        {type: choice,     values: [512, 1024, 2048, 4096, 7000, 8192]}
      blocks:       {type: randint,    low: 1,      high: 4}      # both ends included
      width_log:    {type: lograndint, ...}                        # log-uniform integer
      frozen:       {type: choice,     values: [false, true]}
      momentum:     {type: quniform,   low: 0.1, high: 0.9, q: 0.1}
    points_to_evaluate:             # optional: configs tried first (e.g. a known baseline)
      - {lr: 1.0e-4, dropout: 0.52}
    metric: val_ev                  # val_ev (default) or val_r; the best-so-far is used
    scheduler: {type: asha, grace_period: 2, reduction_factor: 3}   # or {type: fifo}
    search: {algorithm: optuna, seed: 0, n_startup_trials: 5}       # or random
    max_concurrent: 4               # optional cap on concurrent trials

Every unknown key, unknown parameter, unknown type, an empty range (``low >= high``, an
empty ``values`` list), a non-positive log-range bound, or a searched split setting (all
trials must share one split) raises :class:`SpaceError` naming the offending item.
Numbers written like ``1e-5`` (which YAML 1.1 reads as strings) are accepted.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from .presets import ConfigError, FinetuneConfig, config_fields, load_preset

__all__ = ["SpaceError", "ParamSpec", "SearchSpace", "load_space", "PARAM_TYPES"]

PARAM_TYPES: dict[str, tuple[set[str], set[str]]] = {
    # type: (required keys, optional keys)
    "uniform": ({"low", "high"}, set()),
    "loguniform": ({"low", "high"}, set()),
    "quniform": ({"low", "high", "q"}, set()),
    "randint": ({"low", "high"}, set()),
    "lograndint": ({"low", "high"}, set()),
    "choice": ({"values"}, set()),
}
TOP_KEYS = {"name", "description", "base", "fixed", "params", "points_to_evaluate", "metric",
            "scheduler", "search", "max_concurrent"}
SCHEDULER_KEYS = {"asha": {"type", "grace_period", "reduction_factor", "max_t"},
                  "fifo": {"type"}}
SEARCH_KEYS = {"algorithm", "seed", "n_startup_trials"}
SEARCH_ALGORITHMS = ("optuna", "random")
METRICS = {"val_ev": "best_val_ev", "val_r": "best_val_r"}
# all trials of a campaign must share one split (and one dataset region)
UNSEARCHABLE = {"val_fraction", "test_fraction", "split_seed", "region", "preset"}


class SpaceError(ValueError):
    """A search-space YAML is malformed; the message names the file and the key."""


def _num(v: Any, where: str) -> float:
    if isinstance(v, bool):
        raise SpaceError(f"{where}: expected a number, got {v!r}")
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            raise SpaceError(f"{where}: expected a number, got {v!r}") from None
        return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f
    raise SpaceError(f"{where}: expected a number, got {v!r}")


def _coerce(v: Any) -> Any:
    """'1e-5' -> 1e-05 (YAML 1.1 reads exponent floats without a dot as strings)."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


@dataclass
class ParamSpec:
    """One searched setting."""

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    q: float | None = None
    values: list[Any] = field(default_factory=list)

    def to_tune(self):
        """The Ray Tune search domain."""
        from ray import tune

        if self.type == "uniform":
            return tune.uniform(self.low, self.high)
        if self.type == "loguniform":
            return tune.loguniform(self.low, self.high)
        if self.type == "quniform":
            return tune.quniform(self.low, self.high, self.q)
        if self.type == "randint":
            return tune.randint(int(self.low), int(self.high) + 1)  # Ray's upper bound is exclusive
        if self.type == "lograndint":
            return tune.lograndint(int(self.low), int(self.high) + 1)
        return tune.choice(list(self.values))

    def contains(self, v: Any) -> bool:
        if self.type == "choice":
            return v in self.values
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        if self.type in ("randint", "lograndint") and int(v) != v:
            return False
        return self.low <= v <= self.high

    def describe(self) -> str:
        if self.type == "choice":
            return f"choice {self.values}"
        return f"{self.type} [{self.low}, {self.high}]"


@dataclass
class SearchSpace:
    """A validated search space."""

    name: str
    base: FinetuneConfig
    params: dict[str, ParamSpec]
    points_to_evaluate: list[dict[str, Any]] = field(default_factory=list)
    metric: str = "best_val_ev"
    scheduler: dict[str, Any] = field(default_factory=lambda: {"type": "asha"})
    search: dict[str, Any] = field(default_factory=lambda: {"algorithm": "optuna", "seed": 0})
    max_concurrent: int | None = None
    description: str = ""
    source: str = ""

    def param_space(self) -> dict[str, Any]:
        """Ray Tune ``param_space``: the searched domains only (fixed values live in `base`)."""
        return {k: p.to_tune() for k, p in self.params.items()}

    def config_for(self, trial_params: Mapping[str, Any]) -> FinetuneConfig:
        """The full config of a trial: base + the trial's searched values."""
        return self.base.replace(**dict(trial_params))


def _check_param(name: str, spec: Any, where: str) -> ParamSpec:
    w = f"{where}: params.{name}"
    if not isinstance(spec, Mapping):
        raise SpaceError(f"{w}: expected a mapping like {{type: uniform, low: .., high: ..}}, "
                         f"got {spec!r}")
    t = spec.get("type")
    if t not in PARAM_TYPES:
        raise SpaceError(f"{w}: unknown type {t!r}; use one of {sorted(PARAM_TYPES)}")
    req, opt = PARAM_TYPES[t]
    unknown = sorted(set(spec) - req - opt - {"type"})
    if unknown:
        raise SpaceError(f"{w}: unknown key(s) {unknown} for type {t!r} (allowed: "
                         f"{sorted(req | opt | {'type'})})")
    missing = sorted(req - set(spec))
    if missing:
        raise SpaceError(f"{w}: type {t!r} needs key(s) {missing}")
    if t == "choice":
        vals = spec["values"]
        if not isinstance(vals, list) or not vals:
            raise SpaceError(f"{w}: empty range: 'values' must be a non-empty list, got {vals!r}")
        vals = [_coerce(v) for v in vals]
        dup = sorted({repr(v) for v in vals if vals.count(v) > 1})
        if dup:
            raise SpaceError(f"{w}: duplicate values {dup}")
        return ParamSpec(name, t, values=vals)
    low, high = _num(spec["low"], f"{w}.low"), _num(spec["high"], f"{w}.high")
    if not (math.isfinite(low) and math.isfinite(high)):
        raise SpaceError(f"{w}: bounds must be finite, got [{low}, {high}]")
    if t in ("randint", "lograndint"):
        if int(low) != low or int(high) != high:
            raise SpaceError(f"{w}: {t} bounds must be integers, got [{low}, {high}]")
        if low > high:
            raise SpaceError(f"{w}: empty range [{low}, {high}] (low > high)")
    elif low >= high:
        raise SpaceError(f"{w}: empty range [{low}, {high}] (need low < high)")
    if t in ("loguniform", "lograndint") and low <= 0:
        raise SpaceError(f"{w}: log-scale range needs low > 0, got {low}")
    q = None
    if t == "quniform":
        q = _num(spec["q"], f"{w}.q")
        if q <= 0 or q > high - low:
            raise SpaceError(f"{w}: q={q} must be > 0 and at most high - low = {high - low}")
    return ParamSpec(name, t, float(low) if t in ("uniform", "loguniform", "quniform") else int(low),
                     float(high) if t in ("uniform", "loguniform", "quniform") else int(high), q)


def _check_sub(d: Any, allowed: set[str], w: str) -> dict:
    if not isinstance(d, Mapping):
        raise SpaceError(f"{w}: expected a mapping, got {d!r}")
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise SpaceError(f"{w}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    return dict(d)


def parse_space(doc: Any, where: str = "search space", default_name: str = "campaign") -> SearchSpace:
    """Validate a parsed YAML document and build the SearchSpace."""
    if not isinstance(doc, Mapping):
        raise SpaceError(f"{where}: expected a mapping at the top level, got {type(doc).__name__}")
    unknown = sorted(set(doc) - TOP_KEYS)
    if unknown:
        raise SpaceError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(TOP_KEYS)}")
    known_cfg = config_fields()
    fixed = doc.get("fixed") or {}
    if not isinstance(fixed, Mapping):
        raise SpaceError(f"{where}: 'fixed' must be a mapping of settings, got {fixed!r}")
    bad = sorted(set(fixed) - known_cfg)
    if bad:
        raise SpaceError(f"{where}: fixed: unknown setting(s) {bad}; known: {sorted(known_cfg)}")
    try:
        base = load_preset(str(doc["base"])) if doc.get("base") else FinetuneConfig()
        base = base.replace(**{k: _coerce(v) for k, v in fixed.items()})
    except ConfigError as e:
        raise SpaceError(f"{where}: base/fixed: {e}") from e
    raw = doc.get("params")
    if not isinstance(raw, Mapping) or not raw:
        raise SpaceError(f"{where}: 'params' must be a non-empty mapping of searched settings")
    params = {}
    for name, spec in raw.items():
        if name not in known_cfg:
            raise SpaceError(f"{where}: params: unknown setting {name!r}; known: "
                             f"{sorted(known_cfg - UNSEARCHABLE)}")
        if name in UNSEARCHABLE:
            raise SpaceError(f"{where}: params.{name} cannot be searched: every trial of a "
                             "campaign shares one split and target set; put it under 'fixed'")
        if name in fixed:
            raise SpaceError(f"{where}: {name!r} is both fixed and searched")
        params[name] = _check_param(name, spec, where)
    # every corner of the space must make a valid config (e.g. dropout < 1, blocks >= 1)
    for p in params.values():
        corners = p.values if p.type == "choice" else [p.low, p.high]
        for v in corners:
            try:
                base.replace(**{p.name: v})
            except ConfigError as e:
                raise SpaceError(f"{where}: params.{p.name} value {v!r} is not a valid "
                                 f"setting: {e}") from e
    points = doc.get("points_to_evaluate") or []
    if not isinstance(points, list):
        raise SpaceError(f"{where}: points_to_evaluate must be a list of mappings")
    clean_points = []
    for i, pt in enumerate(points):
        if not isinstance(pt, Mapping):
            raise SpaceError(f"{where}: points_to_evaluate[{i}] must be a mapping, got {pt!r}")
        extra = sorted(set(pt) - set(params))
        if extra:
            raise SpaceError(f"{where}: points_to_evaluate[{i}] sets {extra}, which are not "
                             f"searched params ({sorted(params)})")
        pt = {k: _coerce(v) for k, v in pt.items()}
        for k, v in pt.items():
            if not params[k].contains(v):
                raise SpaceError(f"{where}: points_to_evaluate[{i}].{k}={v!r} lies outside "
                                 f"{params[k].describe()}")
        clean_points.append(pt)
    metric = doc.get("metric", "val_ev")
    if metric not in METRICS:
        raise SpaceError(f"{where}: metric {metric!r} unknown; use one of {sorted(METRICS)}")
    sched = _check_sub(doc.get("scheduler") or {"type": "asha"}, set().union(*SCHEDULER_KEYS.values()),
                       f"{where}: scheduler")
    st = sched.setdefault("type", "asha")
    if st not in SCHEDULER_KEYS:
        raise SpaceError(f"{where}: scheduler.type {st!r} unknown; use one of {sorted(SCHEDULER_KEYS)}")
    _check_sub(sched, SCHEDULER_KEYS[st], f"{where}: scheduler ({st})")
    for k in ("grace_period", "reduction_factor", "max_t"):
        if k in sched:
            v = _num(sched[k], f"{where}: scheduler.{k}")
            if v < (2 if k == "reduction_factor" else 1):
                raise SpaceError(f"{where}: scheduler.{k}={v} is too small")
            sched[k] = v
    search = _check_sub(doc.get("search") or {}, SEARCH_KEYS, f"{where}: search")
    search.setdefault("algorithm", "optuna")
    search.setdefault("seed", 0)
    if search["algorithm"] not in SEARCH_ALGORITHMS:
        raise SpaceError(f"{where}: search.algorithm {search['algorithm']!r} unknown; use one "
                         f"of {SEARCH_ALGORITHMS}")
    mc = doc.get("max_concurrent")
    if mc is not None and (isinstance(mc, bool) or not isinstance(mc, int) or mc < 1):
        raise SpaceError(f"{where}: max_concurrent must be a positive integer, got {mc!r}")
    name = doc.get("name") or default_name
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        raise SpaceError(f"{where}: name {name!r} must be letters, digits, '-' or '_'")
    return SearchSpace(name=name, base=base, params=params, points_to_evaluate=clean_points,
                       metric=METRICS[metric], scheduler=sched, search=search, max_concurrent=mc,
                       description=str(doc.get("description") or ""), source=where)


def load_space(path_or_text: str | Mapping) -> SearchSpace:
    """Load and validate a search space from a YAML file (local or URI), YAML text or a dict."""
    import yaml

    if isinstance(path_or_text, Mapping):
        return parse_space(path_or_text)
    s = str(path_or_text)
    if "\n" in s:
        where, text, default = "search space", s, "campaign"
    else:
        where = s
        default = os.path.splitext(os.path.basename(s))[0]
        try:
            import fsspec

            with fsspec.open(s, "rt") as f:
                text = f.read()
        except FileNotFoundError:
            raise SpaceError(f"search space file {s!r} does not exist") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpaceError(f"{where}: invalid YAML: {e}") from e
    return parse_space(doc, where, default)
