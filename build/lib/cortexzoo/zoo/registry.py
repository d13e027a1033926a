"""Build zoo models from specs, list them, and count their layers cheaply.

Every torchvision classification architecture (``torchvision.models.list_models``) and
every timm architecture (``timm.list_models()``) is addressable; the curated default
zoo is in :mod:`cortexzoo.zoo.curated`.
"""

from __future__ import annotations

import dataclasses
import logging
import fnmatch
import os
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

import torch
from torch import nn

from cortexzoo.zoo import weights as W
from cortexzoo.zoo.baselines import available_baselines, build_baseline
from cortexzoo.zoo.curated import default_zoo
from cortexzoo.zoo.custom import (_CUSTOM, on_change,
                                  resolve_custom)
from cortexzoo.zoo.layers import (
    LayerEnumerationError,
    count_layers_structural,
    enumerate_layers,
)
from cortexzoo.zoo.preprocess import (
    PreprocessConfig,
    timm_config,
    torchvision_config,
)
from cortexzoo.zoo.spec import ModelSpec, parse_spec, timm_names, torchvision_names
from cortexzoo.zoo.weights import WeightsFileError, WeightsUnavailableError

log = logging.getLogger("cortexzoo")


@dataclass
class LoadedModel:
    """A zoo model ready for feature extraction.

    Attributes
    ----------
    spec : ModelSpec
    module : nn.Module
        In eval mode, ``requires_grad`` False on every parameter, in-place activations
        switched off (hooked outputs stay valid after the forward pass).
    preprocess : PreprocessConfig
    layers : list of str
        Layer names (``module.named_modules()`` names) in forward order.
    relative_depth : dict
        ``layer -> index / (n_layers - 1)`` (0.0 for a single layer).
    n_params : int
    """

    spec: ModelSpec
    module: nn.Module | None  # None from describe_model: layers and preprocessing only
    preprocess: PreprocessConfig
    layers: list[str]
    relative_depth: dict[str, float] = field(default_factory=dict)
    n_params: int = 0

    @property
    def n_layers(self) -> int:
        return len(self.layers)


@dataclass(frozen=True)
class ModelEntry:
    """One row of :func:`list_models`."""

    spec: str
    source: str
    name: str
    weights: str
    weights_available: bool
    n_layers: int | None


def relative_depths(layers: list[str]) -> dict[str, float]:
    """``index / (n - 1)`` per layer; 0.0 for a single layer."""
    n = len(layers)
    if n == 1:
        return {layers[0]: 0.0}
    return {name: i / (n - 1) for i, name in enumerate(layers)}


def _build_custom(spec: ModelSpec) -> nn.Module:
    entry = resolve_custom(spec.name)
    torch.manual_seed(spec.seed)
    model = entry.build()
    if spec.weights == "random":
        return model
    path = spec.weights_file if spec.weights == "file" else entry.trained_weights
    if path is None:
        raise WeightsUnavailableError(
            f"custom model {spec.name!r} has no trained weights registered; provide a file: "
            f"custom:{spec.name}@/path/to/file.pth"
        )
    W.load_into(model, W.load_state_dict_file(str(path)), str(path))
    return model


# ----------------------------------------------------------------- building
def _torchvision_random(name: str, **kwargs) -> nn.Module:
    import torchvision

    if name in ("googlenet", "inception_v3"):
        # Their own init (init_weights=True is what weights=None means; explicit to
        # avoid the FutureWarning).
        kwargs["init_weights"] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torchvision.models.get_model(name, weights=None, **kwargs)


def _timm_random(name: str) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False)


def _load_file_lenient(model: nn.Module, sd: dict, path: str) -> None:
    """Strict load, except that missing auxiliary-head tensors (never used in eval) are allowed."""
    result = model.load_state_dict(sd, strict=False)
    missing = [k for k in result.missing_keys if not k.lower().startswith(("aux", "auxlogits"))]
    if missing or result.unexpected_keys:
        W.load_into(model, sd, path)  # raises WeightsFileError with the details


def _build_torchvision(spec: ModelSpec) -> nn.Module:
    import torchvision

    if spec.weights == "random":
        torch.manual_seed(spec.seed)
        return _torchvision_random(spec.name)
    if spec.weights == "file":
        path = str(spec.weights_file)
        sd = W.load_state_dict_file(path)
        torch.manual_seed(spec.seed)
        # torchvision's published GoogLeNet/Inception-v3 weights (ported from TF) expect
        # the input re-normalization that weights="DEFAULT" switches on.
        extra = {"transform_input": True} if spec.name in ("googlenet", "inception_v3") else {}
        model = _torchvision_random(spec.name, **extra)
        _load_file_lenient(model, sd, path)
        return model
    # trained
    if W.torchvision_weights_url(spec.name) is None:
        raise WeightsUnavailableError(W.unavailable_message(spec))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torchvision.models.get_model(spec.name, weights="DEFAULT")
    except Exception as e:  # noqa: BLE001 - classified below
        if W.is_download_error(e):
            raise WeightsUnavailableError(W.unavailable_message(spec, e)) from e
        raise


def _build_timm(spec: ModelSpec) -> nn.Module:
    import timm

    if spec.weights == "random":
        torch.manual_seed(spec.seed)
        return _timm_random(spec.name)
    if spec.weights == "file":
        path = str(spec.weights_file)
        if not os.path.isfile(path):
            raise WeightsFileError(f"weights file not found: {path} (spec {spec})")
        torch.manual_seed(spec.seed)
        try:
            # timm's own loader applies the architecture's checkpoint filters.
            return timm.create_model(
                spec.name, pretrained=True, pretrained_cfg_overlay=dict(file=path)
            )
        except (RuntimeError, KeyError, ValueError, EOFError, OSError) as e:
            if isinstance(e, WeightsFileError):
                raise
            detail = " ".join(str(e).split())[:600]
            raise WeightsFileError(f"weights file {path} does not fit {spec.name}: {detail}") from e
    # trained
    offline = W.offline_weights(spec)
    if offline is not None:
        torch.manual_seed(spec.seed)
        model = _timm_random(spec.name)
        path = offline.locate()
        W.load_into(model, offline.convert(model, path), path)
        return model
    try:
        return timm.create_model(spec.name, pretrained=True)
    except Exception as e:  # noqa: BLE001 - classified below
        if W.is_download_error(e) or "No pretrained weights" in str(e):
            raise WeightsUnavailableError(W.unavailable_message(spec, e)) from e
        raise


def _preprocess_for(spec: ModelSpec, module: nn.Module | None = None) -> PreprocessConfig:
    """The preprocessing of the weights ``spec`` loads: offline weights carry their own,
    a local file its ``.preprocess.json`` sidecar; otherwise the source's record of its
    trained weights (torchvision's weights transforms, timm's pretrained config), which
    for random weights is the architecture's default."""
    if spec.weights == "file":
        side = W.sidecar_preprocess(str(spec.weights_file))
        if side is not None:
            return side
        log.warning("%s: no preprocessing recorded beside the weights file (write %s); using "
                    "the architecture's default", spec, f"{spec.weights_file}.preprocess.json")
    offline = W.offline_weights(spec)
    if offline is not None:
        return offline.preprocess
    if spec.source == "torchvision":
        return torchvision_config(spec.name)
    if spec.source == "timm":
        return timm_config(spec.name)
    if spec.source == "custom":
        return resolve_custom(spec.name).preprocess
    raise ValueError(f"no preprocessing rule for source {spec.source!r}")


# ------------------------------------------------------------ layer caches
def _meta_instance(source: str, name: str) -> nn.Module:
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if source == "torchvision":
            return _torchvision_random(name)
        if source == "custom":
            return resolve_custom(name).build()
        return _timm_random(name)


@lru_cache(maxsize=512)
def _meta_layers(source: str, name: str, input_size: int) -> tuple[str, ...] | None:
    """Layers from a forward pass on a meta instance; None if meta cannot run it."""
    try:
        m = _meta_instance(source, name)
        return tuple(enumerate_layers(m, input_size))
    except Exception:  # noqa: BLE001 - meta support varies by architecture
        return None


@lru_cache(maxsize=4096)
def _structural_count(source: str, name: str) -> int | None:
    try:
        return count_layers_structural(_meta_instance(source, name))
    except Exception:  # noqa: BLE001
        return None


on_change(_meta_layers.cache_clear)
on_change(_structural_count.cache_clear)

# Bump when the layer rule in layers.py changes: it invalidates the on-disk counts.
LAYER_RULE_VERSION = 1


def _count_cache_path() -> str | None:
    """JSON file of layer counts, per library versions; None disables the disk cache.

    Location: ``$CORTEXZOO_CACHE`` (empty string disables) or ``~/.cache/cortexzoo``.
    """

    root = os.environ.get("CORTEXZOO_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "cortexzoo"))
    if not root:
        return None
    return os.path.join(root, _count_file_name())


def _count_file_name() -> str:
    import timm
    import torchvision

    tag = f"v{LAYER_RULE_VERSION}-torch{torch.__version__}-tv{torchvision.__version__}-timm{timm.__version__}"
    return f"layer_counts-{tag}.json".replace("+", "_")


def _packaged_count_path() -> str:
    """Counts for the curated zoo shipped with the package (same versions only), so a
    fresh machine lists the zoo without a meta forward per architecture.
    Regenerate with ``python -m cortexzoo.zoo.registry --write-packaged-counts``."""
    return os.path.join(os.path.dirname(__file__), "layer_counts", _count_file_name())


def _read_counts(path: str | None) -> dict[str, int]:
    import json

    if path is None or not os.path.isfile(path):
        return {}
    try:
        with open(path) as f:
            data = json.load(f)
        return {k: int(v) for k, v in data.items()}
    except (OSError, ValueError, TypeError):
        return {}  # a corrupt cache is only a slower listing


def _write_counts(path: str | None, counts: dict[str, int]) -> None:
    import json
    import tempfile

    if path is None:
        return
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(counts, f, sort_keys=True)
        os.replace(tmp, path)  # atomic: concurrent listers never see half a file
    except OSError:
        pass


def count_layers(spec: "str | ModelSpec") -> int | None:
    """Number of layers of the architecture of ``spec`` without building real weights.

    Uses a forward pass on the meta device (exact count); falls back to a structural
    count when meta cannot run the forward; None when even that fails.  Never downloads.
    """
    spec = parse_spec(spec)
    if spec.source == "baseline":
        # Extras are wrapped as one child layer; only a container core would expand.
        from cortexzoo.zoo.baselines import _extra_classes

        cls = _extra_classes().get(spec.name)
        if cls is None or not issubclass(cls, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            return 1
        module, cfg = build_baseline(spec.name, spec.seed)
        return len(enumerate_layers(module, cfg.input_size))
    cfg = _preprocess_for(spec)
    layers = _meta_layers(spec.source, spec.arch, cfg.input_size)
    if layers is not None:
        return len(layers)
    return _structural_count(spec.source, spec.arch)


def _count_many(specs: list[ModelSpec]) -> list[int | None]:
    """Layer counts for many specs, memoized on disk per architecture."""
    path = _count_cache_path()
    cache = {**_read_counts(_packaged_count_path()), **_read_counts(path)}
    out: list[int | None] = []
    dirty = False
    for spec in specs:
        if spec.source in ("baseline", "custom"):
            out.append(count_layers(spec))  # cheap, or user code that may change
            continue
        key = f"{spec.source}:{spec.arch}"
        if key not in cache:
            n = count_layers(spec)
            if n is None:
                out.append(None)
                continue
            cache[key] = n
            dirty = True
        out.append(cache[key])
    if dirty:
        _write_counts(path, cache)
    return out


def _layers_for(spec: ModelSpec, module: nn.Module, cfg: PreprocessConfig) -> list[str]:
    if spec.source != "baseline":
        layers = _meta_layers(spec.source, spec.arch, cfg.input_size)
        if layers is not None:
            names = dict(module.named_modules())
            if all(n in names for n in layers):
                return list(layers)
    # Meta failed (or the built module differs): order with one real image.
    return enumerate_layers(module, cfg.input_size)


# ------------------------------------------------------------------ public
def _disable_inplace(module: nn.Module) -> None:
    """Turn off ``inplace`` activations so that a forward hook's output tensor is not
    overwritten by the next layer (``bn1`` -> in-place ``relu`` in ResNets).  Values are
    unchanged; memory use rises slightly."""
    for m in module.modules():
        if isinstance(getattr(m, "inplace", None), bool):
            m.inplace = False


def at_input_size(model: LoadedModel, input_size: int | None,
                  stimulus: str | None = None) -> LoadedModel:
    """``model`` fed at another input side (the same resize/crop ratio; None keeps it),
    with stimuli presented ``stimulus`` ("whole" or "crop"; None keeps it)."""
    pre = model.preprocess
    if input_size:
        resize = max(input_size, round(input_size * pre.resize_size / pre.input_size))
        pre = dataclasses.replace(pre, input_size=input_size, resize_size=resize)
    if stimulus is not None:
        pre = dataclasses.replace(pre, mode=stimulus)
    model.preprocess = pre
    return model


def load_model(spec: "str | ModelSpec", device: "str | torch.device" = "cpu",
               input_size: int | None = None, stimulus: str | None = None) -> LoadedModel:
    """Build the model named by ``spec`` on ``device`` (fed at ``input_size`` when given,
    see :func:`at_input_size`).

    Raises
    ------
    SpecError (ValueError)
        Malformed spec / unknown architecture.
    WeightsUnavailableError (RuntimeError)
        Trained weights are not cached and cannot be downloaded; the message says how
        to provide a local weights file.
    WeightsFileError (ValueError)
        A local weights file is missing or does not fit the architecture.
    """
    spec = parse_spec(spec)
    if spec.source == "baseline":
        module, cfg = build_baseline(spec.name, spec.seed)
    elif spec.source == "torchvision":
        module = _build_torchvision(spec)
        cfg = _preprocess_for(spec, module)
    elif spec.source == "custom":
        module = _build_custom(spec)
        cfg = _preprocess_for(spec, module)
    else:
        module = _build_timm(spec)
        cfg = _preprocess_for(spec, module)
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    _disable_inplace(module)
    layers = _layers_for(spec, module, cfg)
    if not layers:
        raise LayerEnumerationError(f"no layers found for {spec}")
    module.to(device)
    n_params = sum(p.numel() for p in module.parameters())
    return at_input_size(LoadedModel(spec, module, cfg, layers, relative_depths(layers), n_params),
                         input_size, stimulus)


def describe_model(spec: "str | ModelSpec", input_size: int | None = None,
                   stimulus: str | None = None) -> LoadedModel:
    """Layers, relative depths and preprocessing of ``spec`` without building its weights.

    The returned LoadedModel has ``module=None``: it is what a driver needs to plan
    extraction while the actors load the real network. Layers come from a forward pass
    on the meta device; where that is impossible (or for baselines and custom models,
    which are cheap) the model is loaded for real and its module dropped.
    """
    spec = parse_spec(spec)
    if spec.source in ("torchvision", "timm"):
        cfg = _preprocess_for(spec)
        layers = _meta_layers(spec.source, spec.arch, cfg.input_size)
        if layers:
            return at_input_size(LoadedModel(spec, None, cfg, list(layers),
                                             relative_depths(list(layers)), 0), input_size,
                                 stimulus)
    loaded = load_model(spec, input_size=input_size, stimulus=stimulus)
    loaded.module = None
    return loaded


def _all_specs() -> list[str]:
    out = []
    for n in sorted(torchvision_names()):
        out += [f"torchvision:{n}@trained", f"torchvision:{n}@random"]
    for n in sorted(timm_names()):
        out += [f"timm:{n}@trained", f"timm:{n}@random"]
    out += [f"baseline:{b}@none" for b in available_baselines()]
    for n in sorted(_CUSTOM):
        out += [f"custom:{n}@trained", f"custom:{n}@random"]
    return out


def list_models(
    pattern: str | None = None, curated: bool = True, count: bool = True
) -> list[ModelEntry]:
    """Zoo entries whose spec string matches ``pattern`` (fnmatch, case-sensitive).

    Parameters
    ----------
    pattern : str, optional
        e.g. ``"timm:vit_*@random"``, ``"*resnet*"``; None matches everything.
    curated : bool
        True: the curated default zoo; False: every torchvision and timm architecture
        (trained and random) plus the baselines.
    count : bool
        Count layers (meta-device forward, memoized per architecture in memory and in
        ``~/.cache/cortexzoo``, see ``_count_cache_path``).  The first count of the
        curated zoo takes about 30 s on 2 cores, later ones are instant; the whole
        uncurated zoo takes many minutes: narrow it with ``pattern``.
    """
    specs = default_zoo() if curated else _all_specs()
    if pattern is not None:
        specs = [s for s in specs if fnmatch.fnmatchcase(s, pattern)]
    parsed = [parse_spec(s) for s in specs]
    counts = _count_many(parsed) if count else [None] * len(parsed)
    return [
        ModelEntry(
            spec=str(spec),
            source=spec.source,
            name=spec.name,
            weights=spec.weights,
            weights_available=W.weights_available(spec),
            n_layers=n,
        )
        for spec, n in zip(parsed, counts)
    ]


if __name__ == "__main__":  # pragma: no cover - maintenance entry point
    import json
    import sys

    if sys.argv[1:] != ["--write-packaged-counts"]:
        sys.exit("usage: python -m cortexzoo.zoo.registry --write-packaged-counts")
    specs = [parse_spec(s) for s in default_zoo()]
    counts = {}
    for spec, n in zip(specs, _count_many(specs)):
        if spec.source in ("torchvision", "timm") and n is not None:
            counts[f"{spec.source}:{spec.arch}"] = n
    out = _packaged_count_path()
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(counts, f, sort_keys=True, indent=0)
    print(f"{len(counts)} counts -> {out}")
