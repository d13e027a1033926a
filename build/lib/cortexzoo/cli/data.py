"""``cortexzoo data``: make, convert and check dataset folders."""
from __future__ import annotations



def cmd_data_cowley(args) -> int:
    from ..data.cowley import convert_cowley_v4

    print(convert_cowley_v4(args.src, args.out))
    return 0


def cmd_data_planted(args) -> int:
    from ..scan.planted import EMBEDDED, make_planted_dataset

    print(make_planted_dataset(args.out, model=args.model or EMBEDDED["model"], layer=args.layer,
                               n_stimuli=args.n_stimuli, n_neuroids=args.n_neuroids,
                               n_reps=args.n_reps, seed=args.seed))
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
    kind = "responses" if ds.responses is not None else "RDMs only"
    print(f"{args.uri}: ok ({ds.n_stimuli} stimuli, {ds.n_neuroids} neuroids, {kind}, "
          f"regions {ds.regions}, fingerprint {ds.fingerprint()[:12]})")
    return 0


def register(sub) -> None:
    d = sub.add_parser("data", help="make or check dataset folders").add_subparsers(
        dest="data_cmd", required=True)
    dc = d.add_parser("cowley", help="convert the Cowley et al. V4 session to a dataset folder")
    dc.add_argument("src")
    dc.add_argument("out")
    dc.set_defaults(func=cmd_data_cowley)
    dp = d.add_parser("planted", help="a synthetic recording planted in one model layer")
    dp.add_argument("out")
    dp.add_argument("--model")
    dp.add_argument("--layer")
    dp.add_argument("--n-stimuli", type=int, default=200)
    dp.add_argument("--n-neuroids", type=int, default=40)
    dp.add_argument("--n-reps", type=int, default=4)
    dp.add_argument("--seed", type=int, default=0)
    dp.set_defaults(func=cmd_data_planted)
    dv = d.add_parser("validate", help="check a dataset folder")
    dv.add_argument("uri")
    dv.add_argument("--no-decode", action="store_true",
                    help="check the structure only, not that every image decodes")
    dv.add_argument("--quiet", action="store_true")
    dv.set_defaults(func=cmd_data_validate)
