"""Reading a 100-model scan's scores from S3: one file per unit (the layout before
compaction, and old stores) against the compacted layout, in the same run.

A real S3 API on loopback (moto) behind a counting WSGI layer: every HTTP request any
client makes (pandas through s3fs, duckdb's own HTTP client, the store) is counted.
The scores are synthetic but shaped as a scan writes them: 100 models x 15 layers x
1 region x 4 metrics x 3 splits, one unit file per (model, layer).

    python benchmarks/store_read.py [--models 100 --layers 15]

Prints, per layout and reader: HTTP requests, seconds, rows read; and the ratios.
"""
from __future__ import annotations

import argparse
import os
import socket
import threading
import time

os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                  AWS_DEFAULT_REGION="us-east-1")


class Counting:
    """WSGI middleware counting requests."""

    def __init__(self, app):
        self.app, self.n, self.lock = app, 0, threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            self.n += 1
        return self.app(environ, start_response)


def start_moto() -> tuple[str, Counting]:
    from moto.moto_server.threaded_moto_server import MotoRequestHandler
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    class Quiet(MotoRequestHandler):
        def log_request(self, *args, **kwargs):  # one line per request would drown the table
            pass

    app = Counting(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", port, app, True, request_handler=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{port}", app


def unit_rows(model: str, layer: str, depth: float, rng):
    rows = []
    for split in ("loo", "half_a", "half_b"):
        for metric in ("pearson_r", "pearson_r_median", "explained_variance"):
            rows.append(dict(region="IT", method="ridge_gcv", metric=metric, split=split,
                             value=float(rng.uniform(0, 0.6)), ceiling=0.8, alpha=10.0))
        rows.append(dict(region="IT", method="rsa", metric="rsa_pearson", split=split,
                         value=float(rng.uniform(0, 0.3)), ceiling=0.7))
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", type=int, default=100)
    p.add_argument("--layers", type=int, default=15)
    args = p.parse_args()
    endpoint, counter = start_moto()
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    import boto3
    import numpy as np
    import pandas as pd

    from cortexzoo.store import ResultStore, make_score_rows, safe_key

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
    uri = "s3://bench/scan"
    store = ResultStore(uri)
    rng = np.random.default_rng(0)
    t0 = time.time()
    units = []
    for m in range(args.models):
        model = f"timm:net{m:03d}@trained"
        for layer in range(args.layers):
            key = safe_key("scan__bench", model, f"l{layer}")
            common = dict(run_id="bench", dataset="bench", model=model, source="timm",
                          weights="trained", layer=f"l{layer}",
                          relative_depth=layer / max(1, args.layers - 1), reduction="srp4096",
                          n_stimuli=1000, seed=0, scan_key="scan__bench", n_neuroids=100)
            store.write_scores(make_score_rows(common, unit_rows(model, str(layer), 0, rng)), key)
            units.append(key)
    print(f"wrote {len(units)} unit files in {time.time() - t0:.1f} s")

    def measure(label: str, fn) -> dict:
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        counter.n = 0
        t = time.perf_counter()
        df = fn()
        return {"layout": label[0], "reader": label[1], "requests": counter.n,
                "seconds": time.perf_counter() - t, "rows": len(df)}

    def pandas_read():
        return pd.read_parquet(uri + "/scores/", storage_options={"endpoint_url": endpoint})

    def duckdb_read():
        import duckdb

        con = duckdb.connect()
        host = endpoint.replace("http://", "")
        con.execute(f"SET s3_endpoint='{host}'; SET s3_use_ssl=false; SET s3_url_style='path';"
                    "SET s3_access_key_id='testing'; SET s3_secret_access_key='testing';"
                    "SET s3_region='us-east-1';")
        return con.execute(f"SELECT * FROM read_parquet('{uri}/scores/*.parquet', "
                           "union_by_name=true)").df()

    readers = [("pandas", pandas_read), ("cortexzoo", lambda: ResultStore(uri).read_scores())]
    try:
        import duckdb  # noqa: F401

        readers.append(("duckdb", duckdb_read))
    except ImportError:
        print("(duckdb not installed: pip install duckdb to compare it too)")
    results = [measure(("one file per unit", name), fn) for name, fn in readers]
    t = time.time()
    counter.n = 0
    out = store.compact(run_id="bench")
    print(f"compacted {out['scores']} units into {out['parts']} part file(s) in "
          f"{time.time() - t:.1f} s ({counter.n} requests)")
    results += [measure(("compacted", name), fn) for name, fn in readers]
    table = pd.DataFrame(results)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    for name, _ in readers:
        a = table[(table.layout == "one file per unit") & (table.reader == name)].iloc[0]
        b = table[(table.layout == "compacted") & (table.reader == name)].iloc[0]
        assert a["rows"] == b["rows"], "the layouts must hold the same rows"
        print(f"{name}: {a['requests'] / max(1, b['requests']):.0f}x fewer requests, "
              f"{a['seconds'] / b['seconds']:.1f}x faster after compaction")


if __name__ == "__main__":
    main()
