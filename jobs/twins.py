"""Ray job entrypoint for the digital-twin family: train, then evaluate.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/twins.py --config configs/twins_demo.yaml [--data URI --out URI ...]

Flags are those of `cortexzoo twins run`; pass `train` or `eval` first to do one step.
"""
import sys

from cortexzoo.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    step = argv.pop(0) if argv and argv[0] in ("train", "eval", "run") else "run"
    sys.exit(main(["twins", step, *argv]))
