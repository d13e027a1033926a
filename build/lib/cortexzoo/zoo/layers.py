"""Which modules of a network count as its "layers", in forward order.

Rule (SCIENCE.md section 3: "every leaf module a user would name, or the model's named
blocks"):

1. Start from the model's children.  Containers (``nn.Sequential``, ``nn.ModuleList``,
   ``nn.ModuleDict``, subclasses included) are expanded into their children,
   recursively.  A non-container module that holds a *stack of blocks* (a direct
   container child named like a stage with at least two non-leaf modules, e.g.
   torchvision ViT's ``encoder.layers`` or a timm ConvNeXt stage's ``blocks``) is
   expanded too, so transformer/ConvNeXt blocks are layers rather than whole stages.
   "Stack" is decided by name (``blocks``, ``layers``, ``stages``, or numbered
   children ``b1``, ``b2``): parallel branches (Inception) stay one layer.
2. Every other module is a candidate layer: a block (ResNet ``BasicBlock``, a timm
   ``InvertedResidual``) or a leaf (``Conv2d``).
3. One forward pass with hooks (on the meta device, falling back to one real image)
   keeps the candidates that are called exactly once, in the order of their call.
   Dropped: never-called modules (aux heads), modules called more than once
   (ambiguous output), identities in eval mode (Dropout, DropPath, Identity, Flatten,
   and any module whose output *is* its input tensor), and modules whose output is
   neither a tensor nor a tuple/list whose first element is a tensor (for tuples the
   feature is the first element, e.g. ``nn.MultiheadAttention``).
"""

from __future__ import annotations

import re
import warnings
from typing import Any, Iterator

import torch
from torch import nn

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_IDENTITY_TYPES: tuple[type, ...] = (
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.modules.dropout._DropoutNd,
)
_IDENTITY_NAME_HINTS = ("Dropout", "DropPath", "DropBlock", "Identity")


class LayerEnumerationError(RuntimeError):
    """The forward pass used to order the layers failed on meta and on CPU."""


def _is_identity_type(m: nn.Module) -> bool:
    if isinstance(m, _IDENTITY_TYPES):
        return True
    name = type(m).__name__
    return any(h in name for h in _IDENTITY_NAME_HINTS)


def _is_leaf(m: nn.Module) -> bool:
    return next(iter(m.children()), None) is None


# Names under which architectures keep their stacks of blocks (timm "blocks"/"stages",
# torchvision ViT "layers"), and numbered block children (timm RegNet "b1", "b2", ...).
_STACK_CONTAINER_NAMES = frozenset({"blocks", "layers", "stages", "block", "layer", "stage"})
_NUMBERED_BLOCK = re.compile(r"(?:b|block|blocks|layer|stage)_?\d+")


def _holds_block_stack(m: nn.Module) -> bool:
    """True if ``m`` is a stage: it keeps a stack of >= 2 blocks in a container named
    ``blocks``/``layers``/``stages`` (or as numbered children ``b1``, ``b2``, ...).

    Name-based on purpose: parallel branches (Inception ``branch1`` ...) also hold
    sequences of modules but must stay one layer, since their outputs are concatenated.
    """
    numbered = 0
    for name, child in m.named_children():
        if isinstance(child, _CONTAINERS) and name in _STACK_CONTAINER_NAMES:
            if sum(1 for g in child.children() if not _is_leaf(g)) >= 2:
                return True
        if _NUMBERED_BLOCK.fullmatch(name) and not _is_leaf(child):
            numbered += 1
    return numbered >= 2


def candidate_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """Structural candidates (names, modules) before the forward pass, in definition order."""
    out: list[tuple[str, nn.Module]] = []

    def visit(prefix: str, m: nn.Module) -> None:
        for name, child in m.named_children():
            full = f"{prefix}.{name}" if prefix else name
            if isinstance(child, _CONTAINERS) or _holds_block_stack(child):
                visit(full, child)
            elif not _is_identity_type(child):
                out.append((full, child))

    visit("", module)
    return out


def count_layers_structural(module: nn.Module) -> int:
    """Number of structural candidates (no forward pass; an upper bound on ``enumerate_layers``)."""
    return len(candidate_layers(module))


def first_tensor(x: Any) -> torch.Tensor | None:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], torch.Tensor):
        return x[0]
    return None


def _run_with_hooks(
    module: nn.Module, cands: list[tuple[str, nn.Module]], x: torch.Tensor
) -> list[str]:
    calls: dict[str, int] = {}
    order: list[str] = []
    bad: set[str] = set()

    def make_hook(name: str):
        def hook(mod: nn.Module, inputs: tuple, output: Any) -> None:
            calls[name] = calls.get(name, 0) + 1
            if calls[name] == 1:
                order.append(name)
            out = first_tensor(output)
            if out is None:
                bad.add(name)
            elif (
                inputs
                and isinstance(inputs[0], torch.Tensor)
                and out is inputs[0]
                and not getattr(mod, "inplace", False)
            ):
                bad.add(name)  # an identity in eval mode (in-place ops also return their input)

        return hook

    handles = [m.register_forward_hook(make_hook(n)) for n, m in cands]
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module(x)
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    return [n for n in order if calls[n] == 1 and n not in bad]


def _module_device(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


def enumerate_layers(module: nn.Module, input_size: int = 224, in_chans: int = 3) -> list[str]:
    """Layer names of ``module`` in forward order (see module docstring for the rule).

    Parameters
    ----------
    module : nn.Module
        The network; it is not modified (hooks are removed, train/eval mode restored).
    input_size : int
        Side of the square test input used for the ordering forward pass.

    Returns
    -------
    list of str
        Names as in ``module.named_modules()``.
    """
    cands = candidate_layers(module)
    if not cands:
        return []
    device = _module_device(module)
    errors: list[str] = []
    try:
        x = torch.zeros(1, in_chans, input_size, input_size, device=device)
        return _run_with_hooks(module, cands, x)
    except Exception as e:  # noqa: BLE001 - any op may be unsupported on meta
        errors.append(f"{device}: {type(e).__name__}: {e}")
    if device.type == "meta":
        raise LayerEnumerationError(
            "forward pass on the meta device failed; build the module on CPU and call "
            f"enumerate_layers again ({errors[-1]})"
        )
    raise LayerEnumerationError(f"forward pass for layer enumeration failed ({errors[-1]})")


def iter_named_layers(module: nn.Module, layers: list[str]) -> Iterator[tuple[str, nn.Module]]:
    """Yield ``(name, submodule)`` for the given layer names (for registering hooks)."""
    mods = dict(module.named_modules())
    for n in layers:
        if n not in mods:
            raise KeyError(f"layer {n!r} not found in module {type(module).__name__}")
        yield n, mods[n]
