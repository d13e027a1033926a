"""Cache keys: what a stored result depends on, and so what its key must hold.

A result that is reused when it should have been recomputed is silently wrong, the
worst outcome (Brain-Score's issue #2503: a second image size reused activations cached
at the first). A key that holds more than the result depends on only costs recomputation.
So every key below names, in prose, each input its result depends on, and carries a
version for each piece of code that turns inputs into numbers: bump it when that code
changes the numbers, and every older entry becomes a miss, never a stale hit.

Keys are strings made by :func:`safe_key`: a readable prefix plus a digest of all parts.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any

__all__ = ["safe_key", "check_key", "features_key", "canonical_json", "model_id", "scan_key",
           "unit_key"]

_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,199}$")

def safe_key(*parts: Any) -> str:
    """A filesystem- and S3-safe key for a work unit or cache entry.

    The key is a readable prefix built from ``parts`` plus the first 12 hex
    digits of the sha1 of all parts, so distinct parts give distinct keys even
    where sanitizing makes the prefixes equal. Parts are compared as strings
    (``safe_key("m", 3) == safe_key("m", "3")``).

    Examples
    --------
    >>> safe_key("resnet18", "layer1.0/conv1")[:24]
    'resnet18__layer1.0-conv1'
    """
    if not parts:
        raise ValueError("safe_key needs at least one part")
    strs = [str(p) for p in parts]
    digest = hashlib.sha1(json.dumps(strs).encode("utf-8")).hexdigest()[:12]
    cleaned = [re.sub(r"[^A-Za-z0-9._\-]+", "-", p).strip("._-") for p in strs]
    prefix = "__".join(p for p in cleaned if p)[:120].rstrip("._-")
    return f"{prefix}__{digest}" if prefix else digest


def check_key(key: str, what: str) -> str:
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ValueError(
            f"{what} {key!r} is not a safe key: use 1-200 characters from [A-Za-z0-9._-], "
            "starting with a letter or digit (build one with cortexzoo.store.safe_key)")
    return key




def canonical_json(obj: Any) -> str:
    """``obj`` as JSON with sorted keys (dataclasses as dicts): equal settings give equal
    text, whatever the order they were given in."""
    import dataclasses

    def default(o: Any) -> Any:
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return dataclasses.asdict(o)
        return str(o)

    return json.dumps(obj, sort_keys=True, default=default)


def features_key(dataset_fingerprint: str, model_id: str, layer: str,
                 preprocessing: Any, reduction: Any, version: str) -> str:
    """Key of one layer's reduced features on one stimulus set.

    The features depend on: the stimuli (the dataset fingerprint: image entries and
    sizes, and the tables whose row order fixes the rows); the network and its weights
    (``model_id``: the spec with its seed, and for weights read from a file, a digest of
    the file's content, so that a replaced file is new work); the layer; how the images
    were presented (``preprocessing``: stimulus mode, input size, resize, normalization,
    interpolation); the reduction (method, k, seed, density); and the extraction code
    (``version``). They do not depend on the neural responses or the scoring settings.
    """
    return safe_key(model_id, layer, canonical_json(reduction), canonical_json(preprocessing),
                    dataset_fingerprint, f"features-v{version}")


def model_id(spec: str, weights_identity: str) -> str:
    """A model as far as its numbers go: the spec (source, name, weights kind, seed) and
    what identifies its weights' content (see :func:`cortexzoo.zoo.weights.weights_identity`:
    a local file's digest, a download's URL or hub id, an offline package's version,
    the version of the library that builds the architecture)."""
    return f"{spec}|{weights_identity}"


def scan_key(dataset_fingerprint: str, reduction: Any, scoring: Any, presentation: Any) -> str:
    """Key of a scan configuration on a dataset; every unit key of the scan starts from it.

    A scan's scores depend on: the dataset (its fingerprint: responses, tables, RDMs,
    image entries and sizes); the reduction; the scoring settings with the scoring code's
    version (methods, alphas, reliability splits and seed, the held-out halves' seed,
    RSA comparison, dtype); and how stimuli are presented (stimulus mode "whole" or
    "crop", an input-size override). The per-model preprocessing and weights are in the
    unit keys. Results of different scan keys are never mixed in a leaderboard.
    """
    return safe_key("scan", canonical_json({"dataset": dataset_fingerprint, "reduction": reduction,
                                            "scoring": scoring, "presentation": presentation}))


def unit_key(scan: str, model: str, preprocessing: Any, layer: str) -> str:
    """Key of one (model, layer) unit of a scan: the scan key, the model id (spec and
    weights identity, :func:`model_id`), the model's preprocessing (input size, resize,
    normalization, interpolation, stimulus mode) and the layer."""
    return safe_key(scan, model, layer, canonical_json(preprocessing))
