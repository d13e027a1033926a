"""``cortexzoo zoo``: the model registry."""
from __future__ import annotations



def cmd_zoo_list(args) -> int:
    from ..zoo import list_models

    entries = list_models(args.pattern, curated=not args.all)
    if args.format == "csv":
        print("spec,source,name,weights,weights_available,n_layers")
        for e in entries:
            print(f"{e.spec},{e.source},{e.name},{e.weights},{e.weights_available},{e.n_layers}")
    else:
        print(f"{'spec':58s} {'source':11s} {'weights':8s} {'available':9s} {'layers':>6s}")
        for e in entries:
            n = "" if e.n_layers is None else str(e.n_layers)
            print(f"{e.spec:58s} {e.source:11s} {e.weights:8s} "
                  f"{'yes' if e.weights_available else 'no':9s} {n:>6s}")
        print(f"{len(entries)} model(s)")
    return 0


def register(sub) -> None:
    z = sub.add_parser("zoo", help="the model zoo").add_subparsers(dest="zoo_cmd", required=True)
    zl = z.add_parser("list", help="list registered models")
    zl.add_argument("pattern", nargs="?", help="glob on the spec, e.g. 'timm:resnet*'")
    zl.add_argument("--all", action="store_true", help="every torchvision/timm architecture, "
                    "not only the curated zoo")
    zl.add_argument("--format", choices=["table", "csv"], default="table")
    zl.set_defaults(func=cmd_zoo_list)
