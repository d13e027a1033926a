#!/usr/bin/env bash
# Every verb the README shows, from a plain `pip install .` into an empty venv (no lock
# file, no install.sh): what a lab gets with `pip install cortexzoo`. Small inputs; each
# verb must exit 0 (or, for the bad-input checks at the end, 2 with one line).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-python3}
VENV=${SMOKE_VENV:-$(mktemp -d)/venv}
WORK=$(mktemp -d)
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch pinned as install.sh does (an unpinned torch pulls GBs of CUDA wheels); the rest
# is whatever pip resolves for the package's own requirements
"$VENV/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1
"$VENV/bin/python" -m pip install -q "$REPO"
CZ="$VENV/bin/cortexzoo"
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 TQDM_DISABLE=1
export CORTEXZOO_CACHE="$WORK/cache"
cd "$WORK"   # relative paths, as a lab types them
step() { echo "== $*"; "$@"; }
step "$CZ" --help >/dev/null
step "$CZ" zoo list 'timm:tf_efficientnet_lite0*'
step "$CZ" data planted ./planted --model pixels --n-stimuli 40 --n-neuroids 6 --n-reps 3
step "$CZ" data validate ./planted --quiet
step "$CZ" scan --data ./planted --models pixels,timm:test_byobnet@random --out ./results \
    --input-size 32 --k 128 --save-encoders stages.1.0,stages.2.0 --quiet
ENC_A=$(ls -d ./results/encoders/*/timm-test_byobnet-random0/stages.2.0*/* | head -1)
ENC_B=$(ls -d ./results/encoders/*/timm-test_byobnet-random0/stages.1.0*/* | head -1)
step "$CZ" control accentuate --encoder "$ENC_A" --top-sites 1 --seeds ./planted --n-seeds 1 \
    --steps 5 --out ./control --engine local --quiet
step "$CZ" control controversial --a "$ENC_A" --b "$ENC_B" --top-sites 1 --seeds ./planted \
    --n-seeds 1 --steps 5 --out ./control --engine local --quiet
step "$CZ" control score --stimuli ./control --oracle "$ENC_B"
step "$CZ" report ./results --html
step "$CZ" results ./results --list
step "$CZ" results ./results --top 2 --format csv
step "$CZ" results ./results --per-neuroid --metric pearson_r --format csv >/dev/null
if [ -d "$REPO/../shared/data/cowley_v4_210325" ]; then
    step "$CZ" data cowley "$REPO/../shared/data/cowley_v4_210325" ./cowley
fi
"$VENV/bin/python" "$REPO/.ci/importer_samples.py" ./samples >/dev/null
step "$CZ" data brainio --stimuli samples/brainio/stimuli.csv --images samples/brainio/stimuli.zip \
    --assembly samples/brainio/assembly.nc ./brainio --quiet
step "$CZ" data allen samples/allen/session0.nwb,samples/allen/session1.nwb ./allen --quiet
step "$CZ" data nsd --betas samples/nsd/subj01/betas --roi samples/nsd/subj01/nsdgeneral.nii.gz \
    --stimuli samples/nsd/nsd_stimuli.hdf5 --design samples/nsd/nsd_expdesign.mat --images all \
    ./nsd --quiet
step "$CZ" data validate ./nsd --quiet
step "$CZ" finetune --data ./planted --preset shallow-cnn,pixels --set epochs=1 \
    --set image_size=32 --out ./results --pixel-size 8
step "$CZ" tune --data ./planted --space "$REPO/tune_spaces/tiny.yaml" --trials 2 \
    --out ./results --quiet
step "$CZ" twins synth ./sessions --animals 2 --neurons 8 --frames 600 --height 16 --width 24
step "$CZ" twins train --data ./sessions --encoders cnn --seeds 0 --out ./results \
    --max-epochs 1 --batch-size 16
step "$CZ" twins eval --data ./sessions --out ./results
# user errors: exit 2, one line, no traceback
for bad in "results ./nope" "scan --data ./planted --models '' --out ./r2" \
           "scan --data ./planted --k 0 --out ./r2" "scan --data ./nope --out ./r2" \
           "control accentuate --encoder ./nope --seeds ./planted --out ./c2"; do
    set +e
    out=$(eval "$CZ" $bad 2>&1); rc=$?
    set -e
    if [ $rc -ne 2 ] || echo "$out" | grep -q Traceback; then
        echo "expected exit 2 without a traceback from: cortexzoo $bad (got $rc)"; echo "$out"; exit 1
    fi
    echo "== cortexzoo $bad -> 2: $(echo "$out" | head -1)"
done
echo "pip smoke: every verb ran from a plain pip install"
