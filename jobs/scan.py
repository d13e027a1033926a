"""Ray job entrypoint for a zoo scan.

    ray job submit --working-dir . -- python jobs/scan.py --config configs/scan_default.yaml

Only parses the config and calls the package; flags are those of `cortexzoo scan`.
"""
import sys

from cortexzoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["scan", *sys.argv[1:]]))
