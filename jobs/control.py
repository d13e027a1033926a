"""Ray job entrypoint for parametric control (paper 002).

    ray job submit --working-dir . -- python jobs/control.py accentuate --config configs/control_default.yaml

Only parses and calls the package; the arguments are those of `cortexzoo control`.
"""
import sys

from cortexzoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["control", *sys.argv[1:]]))
