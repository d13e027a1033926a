"""Ray job entrypoint for one fine-tuning run (flags of `cortexzoo finetune`).

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/finetune.py --data s3://bucket/majaj --preset resnet34-it --out s3://bucket/results

The training itself runs in the job's driver process (on the head node's GPU if any).
"""
import sys

from cortexzoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["finetune", *sys.argv[1:]]))
