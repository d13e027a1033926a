"""Importer for BrainIO data: a stimulus set (CSV + ZIP) and a neural assembly (netCDF-4).

The layouts, as brainio (``brainio/stimuli.py``, ``assemblies.py``, ``packaging.py``,
``docs/SPECIFICATION.md``) and Brain-Score (``benchmarks/majajhong2015``) write and read them:

* **stimulus set CSV**: one row per stimulus; ``stimulus_id`` (legacy packages:
  ``image_id``) and ``filename``, the file's path inside the ZIP; any more columns are
  stimulus metadata (``object_name``, ``category_name``, ``variation``, ...).
* **stimulus ZIP**: the image files, named by ``filename``.
* **assembly**: a netCDF-4 file with one data variable (``data`` when brainio compressed
  it, ``__xarray_dataarray_variable__`` otherwise) over ``presentation`` x ``neuroid``
  [x ``time_bin``]; brainio resets its MultiIndexes before writing, so each level is a
  plain coordinate of its dimension: ``stimulus_id``, ``repetition``, ... on
  ``presentation``; ``neuroid_id``, ``animal``, ``region``, ``arr``, ... on ``neuroid``;
  ``time_bin_start``, ``time_bin_end`` (ms) on ``time_bin``. Global attributes
  ``identifier`` and ``stimulus_set_identifier``.

The dataset folder: the mean of the time bins lying within the window (default 70-170 ms,
the IT benchmarks' window; NaN bins skipped, as xarray's mean does), one row per
stimulus of the set that the assembly presents (in the CSV's order), presentations kept
as the repetition axis (ordered by the ``repetition`` coordinate, then by position; NaN
padding where stimuli have fewer), images copied unchanged from the ZIP. Every coordinate
is kept: stimulus-level ones (and the CSV's columns) in ``stimuli.parquet``, neuroid ones
in ``neuroids.parquet`` (``animal`` -> ``subject``), and those that vary between the
presentations of one stimulus in ``presentations.parquet`` (one row per presentation:
``stimulus_id``, ``repetition_slot`` = index on the repetition axis). The assembly is
read lazily, a block of presentations at a time.
"""
from __future__ import annotations

import logging
import posixpath
import warnings
import zipfile

import numpy as np
import pandas as pd

from ..core.progress import Progress
from ..core.uri import url_to_fs
from .dataset import write_dataset
from .errors import DatasetError, format_items
from .folder import IMAGES_DIR, join
from .sources import check_target, file_info, is_local, open_source, parse_window, source_path

__all__ = ["convert_brainio", "read_assembly", "PRESENTATIONS"]

log = logging.getLogger("cortexzoo")

PRESENTATIONS = "presentations.parquet"
_DATA_NAMES = ("data", "__xarray_dataarray_variable__")


def _text(values) -> np.ndarray:
    """Coordinate values as numpy; fixed-width bytes decoded to str."""
    a = np.asarray(values)
    if a.dtype.kind == "S" or (a.dtype == object and a.size and isinstance(a.flat[0], bytes)):
        a = np.array([v.decode("utf-8") if isinstance(v, bytes) else v for v in a], dtype=object)
    return a


def read_assembly(f, uri: str):
    """Open a BrainIO assembly lazily: (xarray Dataset, data variable name)."""
    import xarray as xr

    try:
        xds = xr.open_dataset(f, engine="h5netcdf", cache=False)
    except Exception as e:  # noqa: BLE001 - any failure to parse is "not a netCDF-4 file"
        raise DatasetError(f"assembly {uri!r} is not a netCDF-4 (HDF5) file: "
                           f"{type(e).__name__}: {e}") from e
    cands = [n for n, v in xds.data_vars.items() if {"presentation", "neuroid"} <= set(v.dims)]
    if not cands:
        raise DatasetError(f"assembly {uri!r} has no variable over 'presentation' and 'neuroid' "
                           f"(a BrainIO neural assembly is presentation x neuroid [x time_bin]); "
                           f"variables: {format_items([f'{n}{tuple(v.dims)}' for n, v in xds.variables.items()])}")
    if len(cands) > 1:
        named = [n for n in _DATA_NAMES if n in cands]
        if not named:
            raise DatasetError(f"assembly {uri!r} has several data variables over presentation x "
                               f"neuroid: {format_items(cands)}; BrainIO allows one")
        cands = named[:1]
    name = cands[0]
    extra = set(xds[name].dims) - {"presentation", "neuroid", "time_bin"}
    if extra:
        raise DatasetError(f"assembly {uri!r}: data variable {name!r} has dimensions "
                           f"{tuple(xds[name].dims)}; expected presentation x neuroid [x time_bin]")
    return xds, name


def _coords(xds, dim: str, skip: str) -> dict[str, np.ndarray]:
    """Every 1-D variable along ``dim`` (coordinates, and other variables: BrainIO treats
    every variable but the data as metadata), in file order."""
    out = {}
    for n, v in xds.variables.items():
        if n != skip and v.dims == (dim,) and n != dim:
            out[n] = _text(v.values)
    return out


def convert_brainio(stimuli_csv: str, images_zip: str, assembly: str, out_uri: str, *,
                    window: "tuple[float, float] | str" = (70.0, 170.0),
                    subject_coord: str = "animal", region_coord: str = "region",
                    subject: str | None = None, region: str | None = None,
                    name: str | None = None, overwrite: bool = False, digests: bool = True,
                    progress: bool = True, block_bytes: int = 64 << 20) -> str:
    """Convert a BrainIO stimulus set and neural assembly into a dataset folder.

    Parameters
    ----------
    stimuli_csv, images_zip, assembly : paths or URIs (``s3://...``) of the stimulus set's
        CSV and ZIP and of the assembly's netCDF file.
    out_uri : the dataset folder to write.
    window : (start, end) in ms, or ``"70,170"``: the time bins with start >= START and
        end <= END are averaged. Ignored (and recorded so) for an assembly without a
        ``time_bin`` dimension.
    subject_coord, region_coord : the neuroid coordinates naming each neuroid's animal and
        area; ``subject`` / ``region`` give one value for all neuroids instead.
    name : dataset name (default: the assembly's ``identifier`` attribute, else its file name).
    digests : record each source file's SHA-256 in dataset.json (``provenance``).
    block_bytes : presentations read per block (the assembly is never loaded whole).
    """
    out_uri = check_target(out_uri, overwrite)
    stimuli_csv, images_zip, assembly = (source_path(u) for u in (stimuli_csv, images_zip, assembly))
    w0, w1 = parse_window(window)
    stim_set = _read_stimulus_csv(stimuli_csv)
    with open_source(assembly, "assembly") as fobj:
        xds, var = read_assembly(fobj if not is_local(assembly) else assembly, assembly)
        try:
            parts = _convert_assembly(xds, var, assembly, stim_set, (w0, w1), subject_coord,
                                      region_coord, subject, region, progress, block_bytes)
        finally:
            xds.close()
    stimuli, neuroids, responses, presentations, notes = parts
    members = _zip_members(images_zip, stimuli)
    stimuli["image"] = [f"{IMAGES_DIR}/{members[s]}" for s in stimuli["stimulus_id"]]

    attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in notes.pop("attrs").items()}
    attrs = {k: v if isinstance(v, (str, int, float, bool)) else str(v) for k, v in attrs.items()}
    ident = attrs.get("identifier")
    provenance = {
        "importer": "cortexzoo.data.brainio", "window_ms": [w0, w1], **notes,
        "options": {"subject_coord": subject_coord, "region_coord": region_coord,
                    "subject": subject, "region": region},
        "sources": {"stimulus_set_csv": file_info(stimuli_csv, digests),
                    "stimulus_set_zip": file_info(images_zip, digests),
                    "assembly": file_info(assembly, digests, progress=progress)},
        "assembly_attrs": attrs,
    }
    bins = notes.get("time_bins_averaged")
    unit = (f"mean of the assembly's values over time bins {bins} (ms)" if bins
            else "the assembly's values (no time_bin dimension)")
    meta = {
        "name": name or ident or posixpath.splitext(posixpath.basename(assembly))[0],
        "description": (f"BrainIO assembly {ident or assembly} ({len(neuroids)} neuroids, "
                        f"regions {sorted(set(neuroids['region']))}) on stimulus set "
                        f"{attrs.get('stimulus_set_identifier', stimuli_csv)} "
                        f"({len(stimuli)} stimuli, up to {responses.shape[1]} repetitions)."),
        "source": f"BrainIO: {assembly} with {stimuli_csv} + {images_zip}",
        "license": str(attrs.get("license", "see the assembly's source")),
        "response_unit": unit,
        "provenance": provenance,
    }
    if "stimulus_set_identifier" in attrs:
        meta["stimulus_set_identifier"] = attrs["stimulus_set_identifier"]
    # write: validate the tables first (write_dataset does), the images then
    _copy_images(images_zip, members, out_uri, progress)
    uri = write_dataset(out_uri, meta=meta, stimuli=stimuli, neuroids=neuroids,
                        responses=responses, overwrite=overwrite)
    fs, root = url_to_fs(uri)
    buf = presentations.to_parquet(index=False)
    fs.pipe_file(join(root, PRESENTATIONS), buf)
    return uri


def _read_stimulus_csv(uri: str) -> pd.DataFrame:
    with open_source(uri, "stimulus set CSV") as f:
        try:
            df = pd.read_csv(f)
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
            raise DatasetError(f"stimulus set {uri!r} is not a CSV file: {e}") from e
    idcol = "stimulus_id" if "stimulus_id" in df.columns else (
        "image_id" if "image_id" in df.columns else None)
    if idcol is None:
        raise DatasetError(f"stimulus set {uri!r} is not a BrainIO stimulus set CSV: it lacks a "
                           f"'stimulus_id' (legacy: 'image_id') column; has "
                           f"{format_items(list(df.columns))}")
    df = df.rename(columns={idcol: "stimulus_id"})
    df["stimulus_id"] = df["stimulus_id"].astype(str)
    dup = df["stimulus_id"][df["stimulus_id"].duplicated()].unique().tolist()
    if dup:
        raise DatasetError(f"stimulus set {uri!r}: {len(dup)} duplicate stimulus_id(s): "
                           f"{format_items(dup)}")
    df.attrs["uri"] = uri
    return df


def _convert_assembly(xds, var, uri, stim_set, window, subject_coord, region_coord, subject,
                      region, progress, block_bytes):
    da = xds[var]
    pres = _coords(xds, "presentation", var)
    neu = _coords(xds, "neuroid", var)
    sid_name = "stimulus_id" if "stimulus_id" in pres else ("image_id" if "image_id" in pres else None)
    if sid_name is None:
        raise DatasetError(f"assembly {uri!r}: the presentation dimension lacks a 'stimulus_id' "
                           f"coordinate (legacy: 'image_id'); it has {format_items(list(pres))}")
    need = ["neuroid_id"] + ([subject_coord] if subject is None else []) + \
        ([region_coord] if region is None else [])
    missing = [c for c in need if c not in neu]
    if missing:
        raise DatasetError(f"assembly {uri!r}: the neuroid dimension lacks coordinate(s) "
                           f"{format_items(missing)} (it has {format_items(list(neu))}); name "
                           "others (subject_coord=/region_coord=, --subject-coord/--region-coord) "
                           "or give one value for every neuroid (--subject/--region)")
    sids = pres[sid_name].astype(str)
    known = set(stim_set["stimulus_id"])
    absent = sorted(set(sids) - known)
    if absent:
        raise DatasetError(f"assembly {uri!r}: {len(absent)} stimulus id(s) of its presentations "
                           f"are not in the stimulus set {stim_set.attrs.get('uri')!r}: "
                           f"{format_items(absent)}")

    notes: dict = {"data_variable": var, "attrs": dict(xds.attrs)}
    bins = None
    if "time_bin" in da.dims:
        tb = _coords(xds, "time_bin", var)
        lack = [c for c in ("time_bin_start", "time_bin_end") if c not in tb]
        if lack:
            raise DatasetError(f"assembly {uri!r}: the time_bin dimension lacks coordinate(s) "
                               f"{format_items(lack)} (has {format_items(list(tb))})")
        start, end = tb["time_bin_start"].astype(float), tb["time_bin_end"].astype(float)
        bins = np.flatnonzero((start >= window[0]) & (end <= window[1]))
        if bins.size == 0:
            raise DatasetError(f"assembly {uri!r}: no time bin lies within {window[0]:g}-"
                               f"{window[1]:g} ms; its bins: "
                               f"{format_items([f'{a:g}-{b:g}' for a, b in zip(start, end)])}")
        notes["time_bins_averaged"] = [[float(start[i]), float(end[i])] for i in bins]
        da = da.transpose("presentation", "neuroid", "time_bin")
    else:
        notes["time_bins_averaged"] = None
        notes["window_note"] = "the assembly has no time_bin dimension: the window was not applied"
        da = da.transpose("presentation", "neuroid")
    scalars = {n: str(_text(v.values).item()) for n, v in xds.coords.items() if v.ndim == 0}
    if scalars:
        notes["scalar_coords"] = scalars

    # stimuli: the set's rows the assembly presents, in the set's order
    keep = stim_set["stimulus_id"].isin(set(sids)).to_numpy()
    notes["stimuli_in_set_not_presented"] = int((~keep).sum())
    stimuli = stim_set[keep].reset_index(drop=True)
    row_of = {s: i for i, s in enumerate(stimuli["stimulus_id"])}
    rows = np.fromiter((row_of[s] for s in sids), dtype=np.int64, count=sids.size)
    rep = pres.get("repetition")
    rep_key = np.zeros(sids.size) if rep is None else pd.to_numeric(pd.Series(rep), errors="coerce").fillna(np.inf).to_numpy()
    pdf = pd.DataFrame({"row": rows, "rep": rep_key, "pos": np.arange(sids.size)})
    pdf = pdf.sort_values(["row", "rep", "pos"], kind="stable")
    slots = np.empty(sids.size, dtype=np.int64)
    slots[pdf["pos"].to_numpy()] = pdf.groupby("row").cumcount().to_numpy()
    n_reps = int(slots.max()) + 1

    # presentation coordinates: constant within a stimulus -> stimuli; varying -> presentations
    pcols = pd.DataFrame({k: v for k, v in pres.items() if k != sid_name})
    pcols.insert(0, "_row", rows)
    varying = []
    for c in pcols.columns[1:]:
        if pcols.groupby("_row")[c].nunique(dropna=False).max() > 1:
            varying.append(c)
        elif c not in stimuli.columns:
            first = pcols.drop_duplicates("_row").set_index("_row")[c]
            stimuli[c] = first.reindex(np.arange(len(stimuli))).to_numpy()
    presentations = pd.DataFrame({"stimulus_id": sids, "repetition_slot": slots,
                                  "presentation": np.arange(sids.size)})
    for c in varying:
        presentations[c] = pcols[c].to_numpy()

    n_neu = int(da.sizes["neuroid"])
    neuroids = pd.DataFrame({"neuroid_id": neu["neuroid_id"].astype(str)})
    neuroids["subject"] = neu[subject_coord].astype(str) if subject is None else str(subject)
    neuroids["region"] = neu[region_coord].astype(str) if region is None else str(region)
    for k, v in neu.items():
        if k not in neuroids.columns:
            neuroids[k] = v
    notes["coords_not_kept"] = sorted(n for n, v in xds.coords.items()
                                      if v.ndim > 1 or (v.ndim == 1 and v.dims[0] not in
                                                        ("presentation", "neuroid", "time_bin")))

    responses = np.full((len(stimuli), n_reps, n_neu), np.nan, dtype=np.float32)
    n_pres = int(da.sizes["presentation"])
    per_row = n_neu * (1 if bins is None else bins.size) * 8
    step = max(1, block_bytes // max(1, per_row))
    with Progress(n_pres, "assembly presentations", unit="pres", enabled=progress) as bar:
        for a in range(0, n_pres, step):
            b = min(n_pres, a + step)
            if bins is None:
                block = np.asarray(da.isel(presentation=slice(a, b)).values, dtype=np.float64)
            else:
                block = np.asarray(da.isel(presentation=slice(a, b), time_bin=bins).values,
                                   dtype=np.float64)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bins: NaN
                    block = np.nanmean(block, axis=2)
            responses[rows[a:b], slots[a:b]] = block
            bar.update(b - a)
    notes["n_presentations"] = n_pres
    return stimuli, neuroids, responses, presentations, notes


def _zip_members(uri: str, stimuli: pd.DataFrame) -> dict[str, str]:
    """stimulus_id -> member of the ZIP holding its image (``filename``; else the one
    file whose name without extension is the stimulus id)."""
    with open_source(uri, "stimulus set ZIP") as f:
        try:
            with zipfile.ZipFile(f) as z:
                names = [i.filename for i in z.infolist() if not i.is_dir()]
        except zipfile.BadZipFile as e:
            raise DatasetError(f"stimulus set images {uri!r} is not a ZIP archive: {e}") from e
    present = set(names)
    by_base: dict[str, list[str]] = {}
    for n in names:
        by_base.setdefault(posixpath.basename(n), []).append(n)
        by_base.setdefault(posixpath.splitext(posixpath.basename(n))[0], []).append(n)
    out, missing = {}, []
    has_fn = "filename" in stimuli.columns
    for sid, fn in zip(stimuli["stimulus_id"], stimuli["filename"] if has_fn else stimuli["stimulus_id"]):
        fn = str(fn)
        if has_fn and fn in present:
            out[sid] = fn
            continue
        cand = by_base.get(posixpath.basename(fn) if has_fn else sid, [])
        if len(cand) == 1:
            out[sid] = cand[0]
        else:
            missing.append(f"{sid} ({fn})" if has_fn else sid)
    if missing:
        raise DatasetError(f"stimulus set ZIP {uri!r} lacks the image file of {len(missing)} "
                           f"stimulus(es): {format_items(missing)}")
    bad = [m for m in out.values() if m.startswith("/") or ".." in m.split("/")]
    if bad:
        raise DatasetError(f"stimulus set ZIP {uri!r}: member paths escape the folder: "
                           f"{format_items(bad)}")
    return out


def _copy_images(zip_uri: str, members: dict[str, str], out_uri: str, progress: bool,
                 batch: int = 256) -> None:
    """Copy the members unchanged to ``OUT/images/<member>``, ``batch`` files at a time."""
    fs, root = url_to_fs(out_uri)
    wanted = sorted(set(members.values()))
    with open_source(zip_uri, "stimulus set ZIP") as f, zipfile.ZipFile(f) as z, \
            Progress(len(wanted), "copying images", unit="img", enabled=progress) as bar:
        for a in range(0, len(wanted), batch):
            blobs = {join(root, f"{IMAGES_DIR}/{m}"): z.read(m) for m in wanted[a:a + batch]}
            if is_local(out_uri):
                for parent in sorted({posixpath.dirname(p) for p in blobs}):
                    fs.makedirs(parent, exist_ok=True)
            fs.pipe(blobs)
            bar.update(len(blobs))
