"""A planted multi-domain recording for the decoding tests (imported by tests/decode/).

Every stimulus has a domain and a category; each region's neuroids code the category in
a way the test knows:

* ``inv<q>``: a fraction q of the units code it the same way in every domain
  (domain-invariant), the others with a code drawn anew for each domain
  (domain-specific), so out-of-domain accuracy grows with q;
* ``IT``: ``n_ref`` units whose class means form a tight frame (their Gram matrix is
  exactly its expectation) plus unreliable junk neuroids (independent across
  repetitions) that a reliability filter drops;
* ``same``: a pool of units of exactly the reference's kind (random class means of the
  same expected norm): its unit count matching the reference is the reference's size;
* ``weaker``: the same with half the signal power per unit (needs more units).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from cortexzoo.data import write_dataset

DOMAINS = ["hvm", "d1", "d2", "d3", "d4"]


def planted_recording(path, n_classes: int = 5, per_class: dict | None = None, n_ref: int = 40,
                      snr: float = 0.25, pool: int = 600, proportions=(0.8, 0.5, 0.2),
                      n_mix: int = 100, n_junk: int = 10, seed: int = 0, with_kinds=("inv", "ref")):
    rng = np.random.default_rng(seed)
    per_class = per_class or {"hvm": 200, "d1": 8, "d2": 8, "d3": 8, "d4": 8}
    rows = []
    for d in DOMAINS:
        for c in range(n_classes):
            for i in range(per_class[d]):
                rows.append((f"{d}-c{c}-{i}", d, f"c{c}"))
    st = pd.DataFrame(rows, columns=["stimulus_id", "domain", "category"])
    st["image"] = "dot.png"
    lab = st["category"].str[1:].astype(int).to_numpy()
    dom = pd.factorize(st["domain"])[0]
    n = len(st)
    blocks, regions = [], []

    def add(region, X):
        blocks.append(X)
        regions.extend([region] * X.shape[1])

    if "inv" in with_kinds:
        for q in proportions:
            m_inv = int(round(n_mix * q))
            W = rng.normal(size=(n_classes, m_inv))
            V = rng.normal(size=(len(DOMAINS), n_classes, n_mix - m_inv))
            X = np.hstack([0.8 * W[lab], 0.8 * V[dom, lab]]) + rng.normal(size=(n, n_mix))
            add(f"inv{int(q * 100)}", X)
    if "ref" in with_kinds:
        Q, _ = np.linalg.qr(rng.normal(size=(n_ref, n_classes)))
        B = np.sqrt(n_ref) * Q.T                       # B B^T = n_ref I: the expected Gram
        add("IT", snr * B[lab] + rng.normal(size=(n, n_ref)))
        add("same", snr * rng.normal(size=(n_classes, pool))[lab] + rng.normal(size=(n, pool)))
        add("weaker", snr / np.sqrt(2) * rng.normal(size=(n_classes, pool))[lab]
            + rng.normal(size=(n, pool)))
    mean = np.hstack(blocks)
    reps = 2
    R = mean[:, None, :] + 0.05 * rng.normal(size=(n, reps, mean.shape[1]))
    if "ref" in with_kinds and n_junk:
        R = np.concatenate([R, rng.normal(size=(n, reps, n_junk))], axis=2)  # no stimulus signal
        regions.extend(["IT"] * n_junk)
    neu = pd.DataFrame({"neuroid_id": [f"n{i}" for i in range(len(regions))], "subject": "m1",
                        "region": regions})
    img = np.full((8, 8), 128, dtype=np.uint8)
    write_dataset(str(path), meta={"name": "planted-domains"}, stimuli=st, neuroids=neu,
                  responses=R.astype(np.float32), images={"dot.png": img}, overwrite=True)
    return str(path)
