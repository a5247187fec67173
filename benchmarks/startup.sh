#!/usr/bin/env bash
# How long the commands take to start, the median of 3 runs of each:
# - train.py before it trains (printing its help, printing the composed config, refusing a bad
#   value): CPU seconds (user + system), which a busy machine skews less than wall time;
# - the commands that use a trained checkpoint, from start to answer: wall seconds, what a user
#   waits. `python -c "import torch"` is the floor they share; predict.py reads one image, eval.py
#   the 10,000 test digits, export.py writes its default formats, serve.py until its page answers.
#
#   benchmarks/startup.sh [REPO [CKPT]]  # REPO: a checkout of this project (default: this one);
#                                        # CKPT: a checkpoint (default: one trained on 20 batches)
#
# The data is found as train.py finds it ($MNIST_DATA_DIR). The load average is printed with the
# times: they are comparable only at a like load. To compare with an older commit:
# git worktree add /tmp/before <commit>; benchmarks/startup.sh /tmp/before
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(realpath "${1:-$here}")
python=${PYTHON:-$here/.venv/bin/python}  # not realpath: the venv's link is what finds its packages
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
times=$work/times
cd "$repo"
export PYTHONPATH="$repo/src"  # that checkout's package, not the installed one
uptime

median() { sort -n | sed -n 2p; }

thrice() {  # NAME COMMAND...: NAME and the median of what 3 runs of COMMAND print
  local name=$1
  shift
  for _ in 1 2 3; do "$@"; done > "$work/runs"
  printf '%-38s %s s\n' "$name" "$(median < "$work/runs")"
}

cpu() {  # the CPU seconds (user + system) of a command, which may fail
  /usr/bin/time -o "$times" -f "%U %S" "$@" > /dev/null 2>&1 || true
  tail -1 "$times" | awk '{print $1 + $2}'  # after time's line on a failed command's status
}

wall() {  # the wall seconds of a command, which must succeed
  /usr/bin/time -o "$times" -f %e "$@" > /dev/null 2>&1 || { echo "failed: $*" >&2; return 1; }
  cat "$times"
}

served() {  # the wall seconds from serve.py's start until its page answers; it is stopped then
  local port start server
  port=$("$python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
  start=$(date +%s.%N)
  "$python" serve.py "$checkpoint" --port "$port" > /dev/null 2>&1 &
  server=$!
  until curl -sf "http://127.0.0.1:$port/" > /dev/null; do
    kill -0 "$server"  # it ended without serving: the script fails here
    sleep 0.05
  done
  awk "BEGIN {printf \"%.2f\\n\", $(date +%s.%N) - $start}"
  kill "$server"
  wait "$server" || true
}

for case in "--help" "--cfg job" "optimizer=bogus"; do
  # shellcheck disable=SC2086  # the case is several arguments
  thrice "train.py $case (CPU)" cpu "$python" train.py $case
done

checkpoint=${2:-}
if [ -z "$checkpoint" ]; then
  "$python" train.py trainer.max_epochs=1 +trainer.limit_train_batches=20 +trainer.limit_val_batches=2 \
    +trainer.limit_test_batches=2 hydra.run.dir="$work/run" > "$work/train.log" 2>&1 ||
    { cat "$work/train.log" >&2; exit 1; }
  checkpoint=$work/run/checkpoints/last.ckpt
fi
(cd "$here" && "$python" -c "import sys; from tests.drawings import page, ring; page(ring()).save(sys.argv[1])" \
  "$work/digit.png")

thrice 'python -c "import torch"' wall "$python" -c "import torch"
thrice "predict.py CKPT digit.png" wall "$python" predict.py "$checkpoint" "$work/digit.png"
thrice "eval.py CKPT" wall "$python" eval.py "$checkpoint"
thrice "export.py CKPT --out DIR" wall "$python" export.py "$checkpoint" --out "$work/export"
thrice "serve.py CKPT, until its page answers" served
