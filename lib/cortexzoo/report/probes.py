"""The probes section of the HTML report, from what ``cortexzoo twins probe`` wrote under
``RESULTS/probes/``: the cross-model table, neural prediction vs each endpoint
(line, Pearson r, Spearman rho over architecture means) and the figures.

This stage sits below ``probe/`` and does not import it: it reads the Parquet tables and
PNG files by name (the layout is in :mod:`cortexzoo.probe.files`).
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

__all__ = ["ProbeArtifacts", "load_probe_artifacts", "PLOT_ORDER"]

#: Figures under ``probes/plots/`` in the order shown, with their captions.
PLOT_ORDER = {
    "cross_model.png": "Neural prediction vs each endpoint: architecture means with SD over "
                       "seeds (single seeds faint), least-squares line over the means.",
    "probe_curves.png": "Probe curves per architecture: orientation accuracy vs training "
                        "size (ID and OOD), contrast balanced accuracy vs contrast, motion "
                        "accuracy vs coherence (mean over seeds, band: min-max; chance dotted).",
    "tuning.png": "Tuning of the encoder output units that pass quality control: gOSI, "
                  "F1/F0, preferred spatial frequency, c50.",
    "eigenspectra.png": "Eigenspectra on log-log axes (variance fractions), fitted power law "
                        "dashed over the rank window; the recorded cvPCA spectrum in black "
                        "where a session has repeats.",
}


@dataclass
class ProbeArtifacts:
    cross_model: pd.DataFrame
    stats: pd.DataFrame
    figures: list[tuple[str, str, bytes]] = field(default_factory=list)  # (name, caption, png)


def _read_parquet(store: Any, rel: str) -> pd.DataFrame | None:
    data = store.get_bytes(rel)
    return None if data is None else pd.read_parquet(io.BytesIO(data))


def load_probe_artifacts(uri: str, **storage_options: Any) -> ProbeArtifacts | None:
    """The probe tables and figures of results ``uri``; None when ``probes/`` is absent."""
    from ..store import ResultStore

    store = ResultStore(uri, **storage_options)
    cross = _read_parquet(store, "probes/cross_model.parquet")
    if cross is None:
        return None
    stats = _read_parquet(store, "probes/cross_model_stats.parquet")
    figs = []
    for name, caption in PLOT_ORDER.items():
        png = store.get_bytes(f"probes/plots/{name}")
        if png is not None:
            figs.append((name, caption, png))
    return ProbeArtifacts(cross, stats if stats is not None else pd.DataFrame(), figs)
