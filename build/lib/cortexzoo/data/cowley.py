"""Converter for the macaque V4 recordings of Cowley et al. (2023), one session per folder."""
from __future__ import annotations

import io
import os
import re
import zipfile

import numpy as np
import pandas as pd
from PIL import Image

from .dataset import DatasetError, write_dataset

__all__ = ["convert_cowley_v4", "COWLEY_CITATION"]

COWLEY_CITATION = (
    "Cowley, B. R., Stan, P. L., Pillow, J. W., & Smith, M. A. (2023). Compact deep neural "
    "network models of visual cortex. bioRxiv 2023.11.22.568315."
)
COWLEY_SOURCE = ("https://github.com/cowleygroup/V4_compact_models (data_V4_responses/, "
                 "commit f4552ad9d34a466ebc66658f72a08a8e5038f1cf)")
_IMAGE_RE = re.compile(r"(?:.*/)?image(\d+)\.(jpe?g|png)$", re.IGNORECASE)


def convert_cowley_v4(src_dir: str, out_uri: str, session: str | None = None,
                      overwrite: bool = False) -> str:
    """Convert one session of the Cowley et al. V4 data into a dataset folder.

    Expects ``images_<session>.zip`` (image0001.jpg ... image{N}.jpg; image i pairs with
    response index i-1) and ``raw_<session>.npy`` (float spike counts in 100 ms bins,
    [n_neurons, n_images, n_repeat_slots], NaN in empty slots) in `src_dir`.

    Writes the images unchanged under images/, responses as float32
    [n_images, n_repeat_slots, n_neurons] (NaN slots kept), stimuli ``image0001``...
    (columns ``image_index`` = the file number, ``n_repeats`` = valid repeats), neuroids
    ``cowley<session>_n00``... (subject ``monkey_<session>``: the public files do not
    name the animal; region ``V4``; columns ``session``, ``unit_index``).

    Parameters
    ----------
    src_dir : local folder with the two files.
    out_uri : target dataset folder (local, s3:// or gs://).
    session : the session tag; inferred from the single ``raw_*.npy`` file when omitted.
    overwrite : replace an existing dataset at `out_uri`.
    """
    if session is None:
        raws = sorted(f for f in os.listdir(src_dir) if re.fullmatch(r"raw_\w+\.npy", f))
        if len(raws) != 1:
            raise DatasetError(f"cannot infer the session in {src_dir!r}: expected one raw_*.npy, "
                               f"found {raws}")
        session = raws[0][len("raw_"):-len(".npy")]
    raw_path = os.path.join(src_dir, f"raw_{session}.npy")
    zip_path = os.path.join(src_dir, f"images_{session}.zip")
    for p in (raw_path, zip_path):
        if not os.path.exists(p):
            raise DatasetError(f"Cowley V4 source file missing: {p!r}")

    raw = np.load(raw_path, allow_pickle=False)
    if raw.ndim != 3:
        raise DatasetError(f"{raw_path!r}: expected [neurons, images, repeats], got {raw.shape}")
    n_neurons, n_images, _ = raw.shape

    images: dict[str, bytes] = {}
    numbers: dict[int, str] = {}
    with zipfile.ZipFile(zip_path) as z:
        for info in z.infolist():
            m = _IMAGE_RE.fullmatch(info.filename)
            if info.is_dir() or not m:
                continue
            num = int(m.group(1))
            if num in numbers:
                raise DatasetError(f"{zip_path!r}: image number {num} appears twice "
                                   f"({numbers[num]!r}, {info.filename!r})")
            numbers[num] = info.filename
            images[os.path.basename(info.filename)] = z.read(info)
    expected = set(range(1, n_images + 1))
    if set(numbers) != expected:
        missing = sorted(expected - set(numbers))
        extra = sorted(set(numbers) - expected)
        raise DatasetError(f"{zip_path!r} does not hold image0001..image{n_images:04d} matching "
                           f"{raw_path!r}: missing numbers {missing[:10]}, unexpected {extra[:10]}")

    with Image.open(io.BytesIO(images[os.path.basename(numbers[1])])) as im:
        width_px, height_px = im.size
    order = sorted(numbers)  # image i pairs with response index i-1
    names = [os.path.basename(numbers[i]) for i in order]
    responses = np.ascontiguousarray(raw.transpose(1, 2, 0)).astype(np.float32)
    stimuli = pd.DataFrame({
        "stimulus_id": [os.path.splitext(n)[0] for n in names],
        "image": [f"images/{n}" for n in names],
        "image_index": np.asarray(order, dtype=np.int64),
        "n_repeats": (~np.isnan(responses)).any(axis=2).sum(axis=1).astype(np.int64),
    })
    width = max(2, len(str(n_neurons - 1)))
    neuroids = pd.DataFrame({
        "neuroid_id": [f"cowley{session}_n{j:0{width}d}" for j in range(n_neurons)],
        "subject": f"monkey_{session}",
        "region": "V4",
        "session": session,
        "unit_index": np.arange(n_neurons, dtype=np.int64),
    })
    meta = {
        "name": f"cowley_v4_{session}",
        "description": (f"Macaque V4 responses of {n_neurons} neurons (session {session}) to "
                        f"{n_images} colour images of {width_px} x {height_px} px; spike counts in "
                        f"100 ms bins, {int(stimuli['n_repeats'].min())} to "
                        f"{int(stimuli['n_repeats'].max())} repeats per image (NaN marks unused "
                        "repeat slots)."),
        "source": COWLEY_SOURCE,
        "license": "GPL-3.0",
        "citation": COWLEY_CITATION,
        "response_unit": "spike count per 100 ms",
        "species": "macaque",
        "session": session,
        "image_size": [height_px, width_px],
    }
    return write_dataset(out_uri, meta=meta, stimuli=stimuli, neuroids=neuroids,
                         responses=responses, images=images, overwrite=overwrite)
