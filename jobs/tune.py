"""Ray job entrypoint for a tuning campaign.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/tune.py --config campaign.yaml [--resume]

Flags are those of `cortexzoo tune`; inside a Ray job RAY_ADDRESS is set, so the campaign
runs on the job's cluster.
"""
import sys

from cortexzoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
