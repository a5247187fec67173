#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md, in one run of at most 10 minutes on one GPU: for the default
# recipe and experiment=lenet_fast, with classifier.compile off and on, the seconds an epoch, the
# wall seconds of the run (start to printed summary) and its test accuracy (the time to 99% is the
# run's when it ends at or above 99%); then Lightning against the hand loop on the GPU, and where a
# step's time goes (step_cost.py: the hand loop, Lightning's plain loop, train.py, and the line
# "Ours, a step": train.py's own share over Lightning's). The data set lives on the GPU (the data
# module puts its tensors on the trainer's device).
#
#   benchmarks/gpu.sh            # MNIST from $MNIST_DATA_DIR, else data/
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
export MNIST_DATA_DIR=${MNIST_DATA_DIR:-$PWD/data}
out=$(mktemp -d)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "| recipe | compile | s an epoch (after the first) | run s | test accuracy |"
echo "| --- | --- | ---: | ---: | ---: |"
for recipe in default experiment=lenet_fast; do
  for compile in false true; do
    run="$out/${recipe#experiment=}-$compile"
    args=(trainer=gpu "classifier.compile=$compile" "hydra.run.dir=$run")
    [ "$recipe" = default ] || args+=("$recipe")
    start=$(date +%s.%N)
    timeout 80 "$python" train.py "${args[@]}" > "$run.out" 2>&1 || echo "(the run failed or ran out of time: $run.out)"
    end=$(date +%s.%N)
    "$python" - "$run/train.log" "$recipe" "$compile" "$start" "$end" << 'PY'
import re, sys
from datetime import datetime
log, recipe, compile, start, end = sys.argv[1:]
wall = float(end) - float(start)
text = open(log).read() if __import__("os").path.exists(log) else ""
stamps = [datetime.strptime(t, "%Y-%m-%d %H:%M:%S,%f") for t in re.findall(r"^\[([^\]]+)\].* - epoch \d+/", text, re.M)]
laps = [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])]
epoch = f"{sorted(laps)[len(laps) // 2]:.2f}" if laps else "one epoch"
test = re.search(r"test accuracy:\s+([0-9.]+)", text)
print(f"| {recipe} | {compile} | {epoch} | {wall:.1f} | {test.group(1) if test else 'none'} |")
PY
  done
done
echo
timeout 150 "$python" benchmarks/throughput.py --device cuda --models lenet mlp --batch-sizes 128 \
  --paths lightning hand --epochs 3 -- augment=none 2> /dev/null
echo
timeout 110 "$python" benchmarks/step_cost.py --device cuda --models lenet mlp --rounds 2 --short 20 --long 120 \
  --rows 0 1 3 4 9 2> /dev/null
rm -rf "$out"
