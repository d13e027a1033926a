"""Ray job entrypoint for out-of-domain decoding (paper 001).

    ray job submit --working-dir . -- python jobs/decode.py --config configs/decode_default.yaml

Only parses the config and calls the package; flags are those of `cortexzoo decode`.
"""
import sys

from cortexzoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["decode", *sys.argv[1:]]))
