"""``cortexzoo data``: make, convert and check dataset folders."""
from __future__ import annotations



def cmd_data_cowley(args) -> int:
    from ..data.cowley import convert_cowley_v4

    print(convert_cowley_v4(args.src, args.out))
    return 0


def cmd_data_brainio(args) -> int:
    from ..data.brainio import convert_brainio

    uri = convert_brainio(args.stimuli, args.images, args.assembly, args.out,
                          window=args.window, subject_coord=args.subject_coord,
                          region_coord=args.region_coord, subject=args.subject,
                          region=args.region, name=args.name, overwrite=args.overwrite,
                          digests=not args.no_digests, progress=not args.quiet)
    return _summary(uri)


def cmd_data_allen(args) -> int:
    from ..data.allen import convert_allen

    uri = convert_allen(args.nwb, args.out, window=args.window, name=args.name,
                        overwrite=args.overwrite, digests=not args.no_digests,
                        progress=not args.quiet)
    return _summary(uri)


def cmd_data_nsd(args) -> int:
    from ..data.nsd import convert_nsd
    from ._util import csv_list

    labels = None
    if args.roi_labels:
        labels = {}
        for part in csv_list(args.roi_labels):
            value, sep, label = part.partition("=")
            if not sep or not label:
                raise ValueError(f"--roi-labels takes VALUE=NAME pairs, got {part!r}")
            labels[int(value)] = label
    uri = convert_nsd(args.betas, args.stimuli, args.design, args.roi, args.out,
                      subjects=[int(s) for s in csv_list(args.subjects)],
                      sessions=_int_ranges(args.sessions) if args.sessions else None,
                      images=args.images, roi_labels=labels, region=args.region,
                      zscore=args.zscore, link_images=args.link_images,
                      stimuli_key=args.stimuli_key, name=args.name, overwrite=args.overwrite,
                      digests=not args.no_digests, progress=not args.quiet)
    return _summary(uri)


def _int_ranges(text: str) -> list[int]:
    """``"1-3,7"`` -> [1, 2, 3, 7]."""
    out = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        try:
            out += list(range(int(lo), int(hi) + 1)) if sep else [int(part)]
        except ValueError:
            raise ValueError(f"--sessions takes numbers and ranges like 1-3,7; got {text!r}") from None
    return out


def _summary(uri: str) -> int:
    from ..data import load_dataset

    ds = load_dataset(uri)
    print(f"{uri}: {ds.n_stimuli} stimuli, {ds.n_neuroids} neuroids, up to "
          f"{ds.n_repetitions} repetitions, regions {ds.regions}, subjects "
          f"{ds.neuroids['subject'].nunique()}")
    return 0


def cmd_data_planted(args) -> int:
    from ..scan.planted import EMBEDDED, make_planted_dataset

    print(make_planted_dataset(args.out, model=args.model or EMBEDDED["model"], layer=args.layer,
                               n_stimuli=args.n_stimuli, n_neuroids=args.n_neuroids,
                               n_reps=args.n_reps, seed=args.seed))
    return 0


def cmd_data_domains(args) -> int:
    import json

    from ..data.domains import make_domain_set
    from ._util import csv_list

    params = json.loads(args.params) if args.params else None
    if params is not None and not isinstance(params, dict):
        raise ValueError(f"--params must be a JSON object of domain -> parameters, got {args.params!r}")
    uri = make_domain_set(args.src, args.out, domains=csv_list(args.domains), size=args.size,
                          variants=args.variants, seed=args.seed, source_domain=args.source_domain,
                          params=params, name=args.name, overwrite=args.overwrite,
                          workers=args.workers, progress=not args.quiet)
    from ..data import load_dataset

    ds = load_dataset(uri)
    counts = ds.stimuli.groupby("domain").size()
    print(f"{uri}: {ds.n_stimuli} images, {ds.stimuli['category'].nunique()} categories, "
          f"{len(counts)} domains ({', '.join(f'{d} {n}' for d, n in counts.items())})")
    return 0


def cmd_data_validate(args) -> int:
    from ..data import DatasetError, load_dataset
    from ..data.validate import check_image_contents

    ds = load_dataset(args.uri)
    if not args.no_decode:
        bad = check_image_contents(ds, progress=not args.quiet)
        if bad:
            raise DatasetError(f"{args.uri}: {len(bad)} of {ds.n_stimuli} stimulus image(s) "
                               "cannot be used:\n  - " + "\n  - ".join(bad))
    if ds.responses is None and ds.rdms is None:
        print(f"{args.uri}: ok (a stimulus set: {ds.n_stimuli} stimuli, no recordings, "
              f"fingerprint {ds.fingerprint()[:12]})")
        return 0
    kind = "responses" if ds.responses is not None else "RDMs only"
    print(f"{args.uri}: ok ({ds.n_stimuli} stimuli, {ds.n_neuroids} neuroids, {kind}, "
          f"regions {ds.regions}, fingerprint {ds.fingerprint()[:12]})")
    return 0


def _common_import_flags(p) -> None:
    p.add_argument("--name", help="dataset name (default: from the source)")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset at OUT")
    p.add_argument("--no-digests", action="store_true",
                   help="record source files by size only, without their SHA-256")
    p.add_argument("--quiet", action="store_true")


def register(sub) -> None:
    d = sub.add_parser("data", help="make or check dataset folders").add_subparsers(
        dest="data_cmd", required=True)
    dc = d.add_parser("cowley", help="convert the Cowley et al. V4 session to a dataset folder")
    dc.add_argument("src")
    dc.add_argument("out")
    dc.set_defaults(func=cmd_data_cowley)
    db = d.add_parser("brainio", help="convert a BrainIO stimulus set (CSV + ZIP) and neural "
                      "assembly (netCDF) to a dataset folder")
    db.add_argument("--stimuli", required=True, help="the stimulus set CSV (path or URI)")
    db.add_argument("--images", required=True, help="the stimulus set ZIP (path or URI)")
    db.add_argument("--assembly", required=True, help="the assembly netCDF file (path or URI)")
    db.add_argument("out", help="the dataset folder to write")
    db.add_argument("--window", default="70,170",
                    help="START,END in ms: time bins inside it are averaged (70,170)")
    db.add_argument("--subject-coord", default="animal", help="neuroid coordinate naming the animal")
    db.add_argument("--region-coord", default="region", help="neuroid coordinate naming the area")
    db.add_argument("--subject", help="one subject for every neuroid (instead of --subject-coord)")
    db.add_argument("--region", help="one region for every neuroid (instead of --region-coord)")
    _common_import_flags(db)
    db.set_defaults(func=cmd_data_brainio)
    da = d.add_parser("allen", help="convert Allen Brain Observatory two-photon sessions' natural "
                      "scenes epochs (NWB files) to one dataset folder")
    da.add_argument("nwb", help="the sessions' NWB files (paths or URIs), comma-separated")
    da.add_argument("out", help="the dataset folder to write")
    da.add_argument("--window", default="0,500",
                    help="START,END in ms after image onset: the dF/F frames averaged (0,500)")
    _common_import_flags(da)
    da.set_defaults(func=cmd_data_allen)
    dn = d.add_parser("nsd", help="convert Natural Scenes Dataset betas (one or more subjects, "
                      "an ROI) to a dataset folder")
    dn.add_argument("--betas", required=True, help="folder of betas_sessionNN.hdf5; with several "
                    "subjects a template such as .../subj{subject:02d}/func1pt8mm/"
                    "betas_fithrf_GLMdenoise_RR")
    dn.add_argument("--stimuli", required=True, help="nsd_stimuli.hdf5 (path or URI)")
    dn.add_argument("--design", required=True, help="nsd_expdesign.mat (path or URI)")
    dn.add_argument("--roi", required=True, help="ROI mask (.nii/.nii.gz/.npy) in the betas' "
                    "space; a template with {subject} for several subjects")
    dn.add_argument("out", help="the dataset folder to write")
    dn.add_argument("--subjects", default="1", help="comma-separated NSD subject numbers (1)")
    dn.add_argument("--sessions", help="sessions to import, e.g. 1-10 (default: every file)")
    dn.add_argument("--images", choices=("shared", "all"), default="shared",
                    help="shared: the shared images every subject saw; all: one subject's images")
    dn.add_argument("--roi-labels", help="VALUE=NAME,... : mask values kept and their region "
                    "names (default: values > 0, region --region)")
    dn.add_argument("--region", help="region name (default: the mask file's name)")
    dn.add_argument("--zscore", action="store_true",
                    help="z-score each voxel within each session (default: percent signal change)")
    dn.add_argument("--link-images", action="store_true", help="reference the images in the "
                    "stimuli file instead of copying the selected ones into images.npy")
    dn.add_argument("--stimuli-key", default="imgBrick", help="the images' dataset in --stimuli")
    _common_import_flags(dn)
    dn.set_defaults(func=cmd_data_nsd)
    dp = d.add_parser("planted", help="a synthetic recording planted in one model layer")
    dp.add_argument("out")
    dp.add_argument("--model")
    dp.add_argument("--layer")
    dp.add_argument("--n-stimuli", type=int, default=200)
    dp.add_argument("--n-neuroids", type=int, default=40)
    dp.add_argument("--n-reps", type=int, default=4)
    dp.add_argument("--seed", type=int, default=0)
    dp.set_defaults(func=cmd_data_planted)
    dd = d.add_parser("domains", help="render a categorized image set in many image domains "
                      "(grayscale, lines, silhouette, outline, mosaic, painting, ...) for decoding")
    dd.add_argument("src", help="a dataset folder with a 'category' column, or a folder with one "
                    "sub-folder of images per category")
    dd.add_argument("out", help="the stimulus set folder to write")
    dd.add_argument("--domains", help="comma-separated domains (default: all 13; photo is always made)")
    dd.add_argument("--size", type=int, default=224, help="side of the square images (224)")
    dd.add_argument("--variants", type=int, default=1,
                    help="crops per source image (1: the centred square only)")
    dd.add_argument("--seed", type=int, default=0)
    dd.add_argument("--source-domain", default="photo", help="label of the unmodified images")
    dd.add_argument("--params", help='JSON parameter overrides, e.g. \'{"noise": {"sigma": 0.1}}\'')
    dd.add_argument("--name", help="dataset name (default: <source>-domains)")
    dd.add_argument("--workers", type=int, default=1, help="rendering processes")
    dd.add_argument("--overwrite", action="store_true")
    dd.add_argument("--quiet", action="store_true")
    dd.set_defaults(func=cmd_data_domains)
    dv = d.add_parser("validate", help="check a dataset folder")
    dv.add_argument("uri")
    dv.add_argument("--no-decode", action="store_true",
                    help="check the structure only, not that every image decodes")
    dv.add_argument("--quiet", action="store_true")
    dv.set_defaults(func=cmd_data_validate)
