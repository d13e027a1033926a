"""Training states: everything needed to continue a fine-tuning run exactly where it
stopped (weights, optimizer, scheduler, scaler, random generators, best epoch), their
file format and versions, and the checks made when resuming."""
from __future__ import annotations

import hashlib
import io
from typing import Any

import torch

from .presets import FinetuneConfig

__all__ = ["TRAINING_STATE_VERSION", "save_training_state", "load_training_state"]


TRAINING_STATE_VERSION = 2
_READABLE_STATE_VERSIONS = (1, 2)


def save_training_state(state: dict[str, Any], path: str | None = None) -> bytes | None:
    """Write a training state (tensors and plain values only) with ``torch.save`` to
    ``path``, or return its bytes when ``path`` is None."""
    if path is not None:
        torch.save(state, path)
        return None
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def load_training_state(src: str | bytes, name: str | None = None) -> dict[str, Any]:
    """Read a training state written by :func:`save_training_state` (a path, or its
    bytes), safely (``weights_only=True``: no arbitrary objects are unpickled). ``name``
    names it in errors (default: the path)."""
    name = name or (src if isinstance(src, str) else "<bytes>")
    try:
        state = torch.load(src if isinstance(src, str) else io.BytesIO(src), map_location="cpu",
                           weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated, corrupt or not a torch file
        raise ValueError(f"training state {name} cannot be read ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or state.get("version") not in _READABLE_STATE_VERSIONS:
        raise ValueError(f"training state {name} is not a cortexzoo training state of "
                         f"version {' or '.join(map(str, _READABLE_STATE_VERSIONS))}")
    return state


def _constant_keys(model: torch.nn.Module) -> list[str]:
    """State entries training never changes: those of a frozen backbone (its parameters
    get no gradient and it stays in eval mode, so its BatchNorm statistics stay too)."""
    if not getattr(model, "frozen", False) or not hasattr(model, "backbone"):
        return []
    return [k for k in model.state_dict() if k.startswith("backbone.")]


def _digest(sd: dict[str, torch.Tensor], keys: list[str]) -> str:
    """Digest of the named entries' names, dtypes, shapes and bytes."""
    h = hashlib.blake2b(digest_size=16)
    for k in keys:
        t = sd[k].detach().to("cpu").contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _to_cpu(obj: Any) -> Any:
    """A copy of a (nested) state dict with every tensor on the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _check_resume(state: dict[str, Any], cfg: FinetuneConfig) -> None:
    if state.get("version") not in _READABLE_STATE_VERSIONS:
        raise ValueError(f"cannot resume from a training state of version "
                         f"{state.get('version')!r} (expected {TRAINING_STATE_VERSION})")
    if int(state.get("seed", -1)) != cfg.seed or int(state.get("epochs", -1)) != cfg.epochs:
        raise ValueError(f"the training state (seed {state.get('seed')}, {state.get('epochs')} "
                         f"epochs) is not from this configuration (seed {cfg.seed}, "
                         f"{cfg.epochs} epochs)")


