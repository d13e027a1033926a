#!/usr/bin/env bash
# The pictures of the README's "Probing digital twins" section, from nothing, on CPUs:
# synthetic sessions, three small twin architectures x two seeds trained for a few
# epochs with Ray Train, then the probe battery (configs/probe_demo.yaml) and the HTML
# report. About 10 minutes on 2 cores.
#   docs/probe_demo.sh [WORKDIR]      (default /tmp/probe-demo; needs cortexzoo on PATH)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-/tmp/probe-demo}
mkdir -p "$W"
cat > "$W/twins.yaml" <<YAML
twin: {feature_dim: 32, hidden_dim: 32, batch_size: 32, lr_encoder: 3.0e-3, lr_gru: 3.0e-3,
       lr_readout: 3.0e-3}
YAML
cortexzoo twins synth "$W/sessions" --animals 2 --neurons 24,24 --frames 2000 \
    --height 24 --width 40 --rate-scale 3
cortexzoo twins train --config "$W/twins.yaml" --data "$W/sessions" --out "$W/results" \
    --encoders cnn,shufflenet_v2_x1_0,resnet18 --seeds 0,1 --num-workers 1 --max-epochs 4 \
    --no-use-gpu
cortexzoo twins eval --data "$W/sessions" --out "$W/results"
cortexzoo twins probe --config configs/probe_demo.yaml --data "$W/sessions" --out "$W/results"
cortexzoo report "$W/results" --html
python - "$W" <<'PY'   # 64-colour copies, small enough to commit
import sys
from PIL import Image
for src, dst in (("cross_model", "probe_cross_model"), ("probe_curves", "probe_curves")):
    im = Image.open(f"{sys.argv[1]}/results/probes/plots/{src}.png").convert("RGB")
    im.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(f"docs/img/{dst}.png",
                                                                 optimize=True)
PY
echo "pictures in docs/img/, report in $W/results/report.html"
