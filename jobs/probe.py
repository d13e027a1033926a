"""Ray job entrypoint for the probe battery on trained twins (paper 004).

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/probe.py --config configs/probe_default.yaml [--data URI --out URI ...]

Flags are those of `cortexzoo twins probe`.
"""
import sys

from cortexzoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["twins", "probe", *sys.argv[1:]]))
