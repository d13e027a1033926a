"""The image draws of a decoding run: seeded, stratified by category, checked up front.

Split ``s`` (its own generator, seeded by ``(seed, s)``, so split ``s`` is the same
whatever the number of splits) draws ``n_train`` training and ``n_test_id`` held-out
images of the training domain and ``n_test_ood`` images of every other domain. Within a
domain each category gets a share proportional to its share of that domain's images
(largest remainders, ties broken at random), as scikit-learn's ``StratifiedShuffleSplit``.
With a group column (``source_id`` of a ``data domains`` set), the test images of a
split never share a group with its training images (no photo is trained on in one
rendering and tested in another).

Every split has the same layout: ``test`` holds the held-out images first, then each
test domain's block in order, so ``test_domain`` (the block of each test position) is
shared by all splits.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .config import SplitConfig

__all__ = ["Splits", "DecodeDataError", "resolve_domains", "draw_splits", "class_labels"]


class DecodeDataError(ValueError):
    """The stimuli cannot be decoded as asked (missing columns, domains, too few images)."""


def _items(xs, limit: int = 12) -> str:
    xs = [str(x) for x in xs]
    return ", ".join(xs[:limit]) + (f" ... and {len(xs) - limit} more" if len(xs) > limit else "")


@dataclass
class Splits:
    train: np.ndarray        # [S, n_train] stimulus rows
    test: np.ndarray         # [S, m] stimulus rows: held-out in-domain, then each test domain
    test_domain: np.ndarray  # [m] index into ``domains`` of each test position
    domains: list[str]       # the training domain first, then the test domains
    labels: np.ndarray       # [n_stimuli] class index of every stimulus (-1: not a class)
    classes: list[str]

    @property
    def n_splits(self) -> int:
        return int(self.train.shape[0])

    def block_sizes(self) -> np.ndarray:
        return np.bincount(self.test_domain, minlength=len(self.domains))


def resolve_domains(stimuli: pd.DataFrame, train_domain: str | None,
                    test_domains: list[str] | None, meta: dict | None = None,
                    where: str = "the dataset") -> tuple[str, list[str]]:
    """The training domain and the test domains, with errors that name what is missing."""
    missing = [c for c in ("domain", "category") if c not in stimuli.columns]
    if missing:
        raise DecodeDataError(
            f"{where}: stimuli.parquet lacks the column(s) {_items(missing)} that decoding needs "
            f"(columns: {_items(stimuli.columns)}); `cortexzoo data domains` makes a set that has them")
    for col in ("domain", "category"):
        null = stimuli[col].isna().to_numpy()
        if null.any():
            ids = stimuli["stimulus_id"].astype(str).to_numpy()[null]
            raise DecodeDataError(f"{where}: column {col!r} is empty for {null.sum()} stimuli: {_items(ids)}")
    present = list(dict.fromkeys(stimuli["domain"].astype(str)))
    if train_domain is None:
        train_domain = (meta or {}).get("source_domain")
        if train_domain is None:
            raise DecodeDataError(f"{where}: name the training domain (--train-domain); "
                                  f"domains: {_items(present)}")
    if train_domain not in present:
        raise DecodeDataError(f"{where}: unknown training domain {train_domain!r}; domains: "
                              f"{_items(present)}")
    if test_domains is None:
        tests = [d for d in present if d != train_domain]
    else:
        unknown = [d for d in test_domains if d not in present]
        if unknown:
            raise DecodeDataError(f"{where}: unknown test domain(s) {_items(unknown)}; domains: "
                                  f"{_items(present)}")
        tests = [d for d in dict.fromkeys(test_domains) if d != train_domain]
    return train_domain, tests


def class_labels(stimuli: pd.DataFrame, train_domain: str) -> tuple[list[str], np.ndarray]:
    """The classes (the training domain's categories, sorted) and each stimulus' index."""
    cat = stimuli["category"].astype(str).to_numpy()
    dom = stimuli["domain"].astype(str).to_numpy()
    classes = sorted(set(cat[dom == train_domain]))
    index = {c: i for i, c in enumerate(classes)}
    return classes, np.array([index.get(c, -1) for c in cat], dtype=np.int64)


def _allocate(n: int, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stratified quotas: ``n`` spread over classes in proportion to ``counts``."""
    total = counts.sum()
    quota = n * counts / total
    base = np.floor(quota).astype(np.int64)
    rest = n - int(base.sum())
    if rest > 0:
        frac = quota - base
        order = np.lexsort((rng.random(frac.size), -frac))  # largest remainder, random ties
        order = [i for i in order if base[i] < counts[i]]
        base[np.asarray(order[:rest], dtype=np.int64)] += 1
    return base


def _quotas(dom_rows: dict[str, np.ndarray], labels: np.ndarray, n_classes: int, domain: str,
            n: int, what: str, reserve: np.ndarray | None = None) -> np.ndarray:
    rows = dom_rows[domain]
    counts = np.bincount(labels[rows], minlength=n_classes).astype(np.int64)
    avail = counts - (0 if reserve is None else reserve)
    if n > avail.sum():
        have = int(avail.sum())
        raise DecodeDataError(f"domain {domain!r} has {have} image(s) available for the {n} {what} "
                              f"of each split; lower the number or add images to {domain!r}")
    # a fixed, seed-free allocation: every split draws the same number per category
    q = _allocate(n, avail, np.random.default_rng(0))
    return q


def draw_splits(stimuli: pd.DataFrame, cfg: SplitConfig, train_domain: str,
                test_domains: list[str]) -> Splits:
    """Draw ``cfg.n_splits`` splits (module docstring); raises :class:`DecodeDataError`
    naming the domain (and category) that has too few images."""
    classes, labels = class_labels(stimuli, train_domain)
    C = len(classes)
    if C < 2:
        raise DecodeDataError(f"the training domain {train_domain!r} has {C} category "
                              f"({_items(classes)}); 2AFC decoding needs at least 2")
    dom = stimuli["domain"].astype(str).to_numpy()
    cat = stimuli["category"].astype(str).to_numpy()
    domains = [train_domain] + list(test_domains)
    dom_rows = {d: np.flatnonzero(dom == d) for d in domains}
    for d in test_domains:
        extra = sorted(set(cat[dom_rows[d]]) - set(classes))
        if extra:
            raise DecodeDataError(f"domain {d!r} has categories the training domain "
                                  f"{train_domain!r} lacks: {_items(extra)} (classes: {_items(classes)})")
    q_train = _quotas(dom_rows, labels, C, train_domain, cfg.n_train, "training images (n_train)")
    if np.any(q_train == 0):
        empty = [classes[i] for i in np.flatnonzero(q_train == 0)]
        raise DecodeDataError(f"n_train={cfg.n_train} leaves category(ies) {_items(empty)} of "
                              f"{train_domain!r} without a training image; raise n_train")
    q_id = _quotas(dom_rows, labels, C, train_domain, cfg.n_test_id,
                   "held-out images (n_test_id) besides the training images", reserve=q_train)
    q_ood = {d: _quotas(dom_rows, labels, C, d, cfg.n_test_ood, "test images (n_test_ood)")
             for d in test_domains}
    group_col = cfg.group_column
    if group_col == "auto":
        group_col = "source_id" if "source_id" in stimuli.columns else None
    if group_col is not None and group_col not in stimuli.columns:
        raise DecodeDataError(f"group column {group_col!r} is not a column of stimuli.parquet "
                              f"(columns: {_items(stimuli.columns)})")
    groups = (pd.factorize(stimuli[group_col].astype(str))[0] if group_col is not None else None)

    S = cfg.n_splits
    m = cfg.n_test_id + cfg.n_test_ood * len(test_domains)
    train = np.empty((S, cfg.n_train), dtype=np.int64)
    test = np.empty((S, m), dtype=np.int64)
    test_domain = np.concatenate([np.zeros(cfg.n_test_id, dtype=np.int64)] +
                                 [np.full(cfg.n_test_ood, j + 1, dtype=np.int64)
                                  for j in range(len(test_domains))])
    by_class = {d: [rows[labels[rows] == c] for c in range(C)] for d, rows in dom_rows.items()}
    for s in range(S):
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, s]))
        tr = np.concatenate([rng.choice(pool, q, replace=False)
                             for pool, q in zip(by_class[train_domain], q_train)])
        train[s] = rng.permutation(tr)
        ok = np.ones(len(stimuli), dtype=bool)
        ok[tr] = False
        if groups is not None:
            ok &= ~np.isin(groups, np.unique(groups[tr]))
        blocks = []
        for j, d in enumerate(domains):
            q = q_id if j == 0 else q_ood[d]
            part = []
            for c, (pool, n) in enumerate(zip(by_class[d], q)):
                elig = pool[ok[pool]]
                if elig.size < n:
                    why = (f" that share no {group_col!r} with the split's training images"
                           if groups is not None else "")
                    raise DecodeDataError(
                        f"split {s}: domain {d!r}, category {classes[c]!r}: needs {n} test image(s)"
                        f"{why}, has {elig.size}; lower the test sizes or add images")
                part.append(rng.choice(elig, n, replace=False))
            blocks.append(rng.permutation(np.concatenate(part)))
        test[s] = np.concatenate(blocks)
    return Splits(train, test, test_domain, domains, labels, classes)
