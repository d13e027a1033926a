"""Model specs: the string ``SOURCE:NAME@WEIGHTS`` that names one model of the zoo.

Grammar
-------
``SOURCE:NAME@WEIGHTS`` where

* ``SOURCE`` is ``torchvision``, ``timm``, ``baseline`` or ``custom`` (case-insensitive;
  ``custom`` names come from ``cortexzoo.zoo.register_model`` or are a dotted import path
  ``pkg.module.factory`` of a function returning an ``nn.Module``);
* ``NAME`` is an architecture of that source (``timm`` names may carry a pretrained
  tag, ``vit_base_patch16_224.augreg_in21k``);
* ``WEIGHTS`` is ``trained``, ``random`` / ``random#SEED`` (the architecture's own
  initialization after ``torch.manual_seed(SEED)``, default seed 0), or a path to a
  local weights file (anything containing ``/`` or ending in ``.pth``, ``.pt``,
  ``.bin``, ``.safetensors``, ``.ckpt``).  Baselines use ``none`` (or ``random#SEED``
  for the ones with random parameters).

``@WEIGHTS`` may be omitted: ``trained`` for networks, ``none`` for baselines.  A bare
baseline name (``pixels``) means ``baseline:pixels@none``.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from dataclasses import dataclass
from functools import lru_cache

SOURCES: tuple[str, ...] = ("torchvision", "timm", "baseline", "custom")
WEIGHTS_KINDS: tuple[str, ...] = ("trained", "random", "file", "none")
_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".pth.tar")


class SpecError(ValueError):
    """A model spec string (or its parts) is malformed or names nothing known."""


@dataclass(frozen=True)
class ModelSpec:
    """One model of the zoo: ``(source, name, weights)`` plus the random seed.

    Parameters
    ----------
    source : {"torchvision", "timm", "baseline"}
    name : str
        Architecture name within the source.
    weights : {"trained", "random", "file", "none"}
    seed : int
        Seed of ``torch.manual_seed`` right before construction (used by ``random``;
        recorded for every spec so that rows are reproducible).
    weights_file : str or None
        Path of the local state dict when ``weights == "file"``.
    """

    source: str
    name: str
    weights: str
    seed: int = 0
    weights_file: str | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise SpecError(f"unknown model source {self.source!r}; expected one of {SOURCES}")
        if self.weights not in WEIGHTS_KINDS:
            raise SpecError(
                f"bad weights {self.weights!r} for {self.source}:{self.name}; "
                f"expected one of {WEIGHTS_KINDS}"
            )
        if (self.weights == "file") != (self.weights_file is not None):
            raise SpecError(
                f"weights='file' requires weights_file (and only then): got "
                f"weights={self.weights!r}, weights_file={self.weights_file!r}"
            )
        if not isinstance(self.seed, int) or self.seed < 0:
            raise SpecError(f"seed must be a non-negative int, got {self.seed!r}")

    def __str__(self) -> str:
        if self.weights == "file":
            w = str(self.weights_file)
        elif self.weights == "random" and self.seed != 0:
            w = f"random#{self.seed}"
        else:
            w = self.weights
        return f"{self.source}:{self.name}@{w}"

    @property
    def is_trained(self) -> bool:
        """True when the weights come from training (``trained`` or a weights file)."""
        return self.weights in ("trained", "file")

    @property
    def arch(self) -> str:
        """Architecture name without a timm pretrained tag (``resnet18.a1_in1k`` -> ``resnet18``)."""
        return self.name.split(".", 1)[0] if self.source == "timm" else self.name

    @property
    def key(self) -> str:
        """Filesystem-safe identifier, e.g. ``timm-resnet18-random0``."""
        if self.weights == "random":
            w = f"random{self.seed}"
        elif self.weights == "file":
            path = str(self.weights_file)
            stem = os.path.basename(path)
            for suf in _FILE_SUFFIXES:
                if stem.endswith(suf):
                    stem = stem[: -len(suf)]
                    break
            digest = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:8]
            w = f"file-{stem}-{digest}"
        else:
            w = self.weights
        raw = f"{self.source}-{self.name}-{w}"
        return re.sub(r"[^A-Za-z0-9_.+-]", "_", raw)

    def with_weights(self, weights: str, seed: int = 0) -> "ModelSpec":
        """Same architecture with other weights (``trained``/``random``/``none``)."""
        return ModelSpec(self.source, self.name, weights, seed)


@lru_cache(maxsize=1)
def torchvision_names() -> frozenset[str]:
    """All torchvision classification architectures (``torchvision.models`` namespace)."""
    import torchvision

    return frozenset(torchvision.models.list_models(module=torchvision.models))


@lru_cache(maxsize=1)
def timm_names() -> frozenset[str]:
    """All timm architectures (``timm.list_models()``)."""
    import timm

    return frozenset(timm.list_models())


def baseline_names() -> frozenset[str]:
    """Registered baseline names (``pixels``, ``pixelsN`` and the lazily found extras)."""
    from cortexzoo.zoo.baselines import available_baselines

    return frozenset(available_baselines())


def _known(source: str) -> frozenset[str]:
    if source == "custom":
        from cortexzoo.zoo.custom import custom_names

        return custom_names()
    if source == "torchvision":
        return torchvision_names()
    if source == "timm":
        return timm_names()
    return baseline_names()


def _check_name(source: str, name: str, spec: str) -> None:
    if not name:
        raise SpecError(f"empty architecture name in model spec {spec!r}")
    known = _known(source)
    if source == "timm":
        base, _, tag = name.partition(".")
        if base in known:
            return
        lookup = base
    elif source == "baseline":
        from cortexzoo.zoo.baselines import is_baseline_name

        if is_baseline_name(name):
            return
        lookup = name
    elif source == "custom":
        from cortexzoo.zoo.custom import resolve_custom

        try:
            resolve_custom(name)
            return
        except (KeyError, ImportError, AttributeError, TypeError):
            lookup = name
    else:
        if name in known:
            return
        lookup = name
    close = difflib.get_close_matches(lookup, sorted(known), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise SpecError(f"unknown {source} architecture {lookup!r} in model spec {spec!r}{hint}")


def _looks_like_file(w: str) -> bool:
    return "/" in w or os.sep in w or w.startswith("~") or w.lower().endswith(_FILE_SUFFIXES)


def parse_spec(s: "str | ModelSpec") -> ModelSpec:
    """Parse ``SOURCE:NAME@WEIGHTS`` into a :class:`ModelSpec`.

    Raises
    ------
    SpecError (a ValueError)
        Unknown source, unknown architecture (with close-name suggestions) or bad
        weights; the message names the offending spec.
    """
    if isinstance(s, ModelSpec):
        return s
    if not isinstance(s, str):
        raise SpecError(f"model spec must be a str, got {type(s).__name__}: {s!r}")
    spec = s.strip()
    if not spec:
        raise SpecError("empty model spec")
    body, at, weights = spec.partition("@")
    if at and not weights:
        raise SpecError(f"empty weights after '@' in model spec {spec!r}")
    source, colon, name = body.partition(":")
    if not colon:
        # A bare name is only allowed for baselines ("pixels").
        name, source = body, "baseline"
        from cortexzoo.zoo.baselines import is_baseline_name

        if not is_baseline_name(name):
            raise SpecError(
                f"model spec {spec!r} has no source; write SOURCE:NAME@WEIGHTS with SOURCE "
                f"in {SOURCES} (e.g. 'timm:{name}@trained')"
            )
    source = source.strip().lower()
    name = name.strip()
    if source not in SOURCES:
        close = difflib.get_close_matches(source, SOURCES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise SpecError(f"unknown source {source!r} in model spec {spec!r} (known: {SOURCES}){hint}")
    _check_name(source, name, spec)

    weights = weights.strip()
    if not weights:
        weights = "none" if source == "baseline" else "trained"
    seed = 0
    weights_file = None
    m = re.fullmatch(r"random(?:#(\d+))?", weights, flags=re.IGNORECASE)
    if m:
        kind = "random"
        seed = int(m.group(1)) if m.group(1) else 0
    elif weights.lower() in ("trained", "none"):
        kind = weights.lower()
    elif _looks_like_file(weights):
        kind = "file"
        weights_file = os.path.expanduser(weights)
    else:
        raise SpecError(
            f"bad weights {weights!r} in model spec {spec!r}; expected 'trained', 'random', "
            f"'random#SEED' or a path to a local weights file (.pth/.pt/.bin/.safetensors)"
        )
    if source == "baseline" and kind in ("trained", "file"):
        raise SpecError(f"baselines take weights 'none' or 'random#SEED', not {weights!r} (spec {spec!r})")
    if source != "baseline" and kind == "none":
        raise SpecError(f"weights 'none' is only for baselines (spec {spec!r}); use 'trained' or 'random'")
    return ModelSpec(source, name, kind, seed, weights_file)


def read_spec_list(path: str) -> list[ModelSpec]:
    """Model specs from a text file: one spec per line; blank lines and ``#`` comments skipped.

    Raises
    ------
    SpecError
        For the first bad line, naming the file and line number.
    """
    out: list[ModelSpec] = []
    with open(path) as f:
        for i, line in enumerate(f, start=1):
            # "random#SEED" contains '#': only a '#' after whitespace starts a comment
            text = re.split(r"\s+#", line.strip(), maxsplit=1)[0].strip()
            if not text or text.startswith("#"):
                continue
            try:
                out.append(parse_spec(text))
            except SpecError as e:
                raise SpecError(f"{path}:{i}: {e}") from None
    return out
