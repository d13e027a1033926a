"""Tiny inputs in the real layouts for the pip smoke of `cortexzoo data brainio|allen|nsd`:
a BrainIO stimulus set + assembly, two Allen Brain Observatory NWB 1 sessions, and an NSD
subject (design .mat, a 73,000-row image brick of 4 px images, two betas sessions, an ROI
mask). The tests (tests/data/test_data_{brainio,allen,nsd}.py) build richer ones and say
where each layout was read. Usage: python importer_samples.py OUT_DIR
"""
import gzip
import io
import os
import struct
import sys
import zipfile

import h5py
import numpy as np
import pandas as pd
import xarray as xr
from PIL import Image
from scipy.io import savemat

out = sys.argv[1]
rng = np.random.default_rng(0)

# BrainIO: CSV + ZIP, netCDF assembly (presentation x neuroid x time_bin), as brainio writes
b = os.path.join(out, "brainio")
os.makedirs(b, exist_ok=True)
ids = [f"im{i}" for i in range(12)]
with zipfile.ZipFile(os.path.join(b, "stimuli.zip"), "w") as z:
    for i, s in enumerate(ids):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(buf, "PNG")
        z.writestr(f"{s}.png", buf.getvalue())
pd.DataFrame({"stimulus_id": ids, "filename": [f"{s}.png" for s in ids]}).to_csv(
    os.path.join(b, "stimuli.csv"), index=False)
sid = np.repeat(ids, 3)
da = xr.DataArray(rng.gamma(2, 5, (sid.size, 6, 3)).astype(np.float32), dims=["presentation", "neuroid", "time_bin"],
                  coords={"stimulus_id": ("presentation", sid),
                          "repetition": ("presentation", np.tile(np.arange(3), len(ids))),
                          "neuroid_id": ("neuroid", [f"n{j}" for j in range(6)]),
                          "animal": ("neuroid", ["a"] * 3 + ["b"] * 3),
                          "region": ("neuroid", ["IT"] * 6),
                          "time_bin_start": ("time_bin", [0, 70, 120]),
                          "time_bin_end": ("time_bin", [70, 120, 170])})
da.to_dataset(name="data").to_netcdf(os.path.join(b, "assembly.nc"), engine="h5netcdf")

# Allen Brain Observatory: NWB 1 sessions with a natural scenes epoch
a = os.path.join(out, "allen")
os.makedirs(a, exist_ok=True)
template = rng.integers(0, 255, (5, 16, 20), dtype=np.uint8)
for k, (container, area) in enumerate([(1, "VISp"), (2, "VISp")]):
    frames = rng.permutation(np.repeat(np.arange(5), 4))
    start = 20 + np.arange(frames.size) * 8
    n = int(start[-1] + 30)
    with h5py.File(os.path.join(a, f"session{k}.nwb"), "w") as h:
        h["nwb_version"] = np.bytes_("NWB-1.0.5")
        h["general/session_id"] = np.bytes_(str(100 + k))
        h["general/experiment_container_id"] = np.bytes_(str(container))
        h["general/session_type"] = np.bytes_("three_session_B")
        h["general/subject/genotype"] = np.bytes_("Cux2-CreERT2/wt;Ai93(TITL-GCaMP6f)/wt")
        h["general/optophysiology/imaging_plane_1/location"] = np.bytes_(area)
        h["general/optophysiology/imaging_plane_1/imaging depth"] = np.bytes_("175 microns")
        p = "processing/brain_observatory_pipeline/"
        h[p + "DfOverF/imaging_plane_1/data"] = rng.normal(0, 0.1, (4, n)).astype(np.float32)
        h[p + "DfOverF/imaging_plane_1/timestamps"] = np.arange(n) / 30.0
        h[p + "ImageSegmentation/cell_specimen_ids"] = 1000 * (k + 1) + np.arange(4)
        h["stimulus/presentation/natural_scenes_stimulus/data"] = frames.astype(np.int32)
        h["stimulus/presentation/natural_scenes_stimulus/frame_duration"] = \
            np.stack([start, start + 7], 1).astype(float)
        h["stimulus/templates/natural_scenes_image_stack/data"] = template

# NSD: design, brick, one subject's betas (int16 x 300, [750, Z, Y, X]) and ROI (NIfTI-1)
s = os.path.join(out, "nsd")
os.makedirs(os.path.join(s, "subj01", "betas"), exist_ok=True)
pick = rng.choice(73000, 10000, replace=False) + 1
shared = np.sort(pick[:1000])
subjectim = np.tile(np.concatenate([shared, pick[1000:]]), (8, 1))
order = rng.permutation(np.repeat(np.arange(1, 10001), 3))
savemat(os.path.join(s, "nsd_expdesign.mat"), {"masterordering": order[None].astype(float),
        "subjectim": subjectim.astype(float), "sharedix": shared[None].astype(float)})
with h5py.File(os.path.join(s, "nsd_stimuli.hdf5"), "w") as h:
    h["imgBrick"] = rng.integers(0, 255, (73000, 4, 4, 3), dtype=np.uint8)
X, Y, Z = 4, 3, 2
for k in (1, 2):
    with h5py.File(os.path.join(s, "subj01", "betas", f"betas_session{k:02d}.hdf5"), "w") as h:
        h["betas"] = (rng.normal(0, 1, (750, Z, Y, X)) * 300).astype(np.int16)
mask = (rng.random((X, Y, Z)) < 0.6).astype("<i2")
hdr = bytearray(348)
struct.pack_into("<i", hdr, 0, 348)
struct.pack_into("<8h", hdr, 40, 3, X, Y, Z, 1, 1, 1, 1)
struct.pack_into("<hh", hdr, 70, 4, 16)
struct.pack_into("<fff", hdr, 108, 352.0, 1.0, 0.0)
hdr[344:348] = b"n+1\0"
with gzip.open(os.path.join(s, "subj01", "nsdgeneral.nii.gz"), "wb") as f:
    f.write(bytes(hdr) + b"\0" * 4 + mask.tobytes(order="F"))
print(out)
