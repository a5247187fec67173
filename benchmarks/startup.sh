#!/usr/bin/env bash
# CPU seconds (user + system, the median of 3) that train.py spends before it trains: printing its
# help, printing the composed config, refusing a bad value. CPU time rather than wall time, so that
# a busy machine skews it less.
#
#   benchmarks/startup.sh [REPO]    # REPO: a checkout of this project (default: this one)
#
# To compare with an older commit: git worktree add /tmp/before <commit>; benchmarks/startup.sh /tmp/before
set -euo pipefail
repo=$(realpath "${1:-$(dirname "$0")/..}")
python=${PYTHON:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python}  # not realpath: the venv's link is what finds its packages
times=$(mktemp)
cd "$repo"
export PYTHONPATH="$repo/src"  # that checkout's package, not the installed one
for case in "--help" "--cfg job" "optimizer=bogus"; do
  for _ in 1 2 3; do
    # shellcheck disable=SC2086  # the case is several arguments
    /usr/bin/time -o "$times" -a -f "%U %S" "$python" train.py $case > /dev/null 2>&1 || true
  done
  printf '%-18s %s s\n' "$case" "$(tail -3 "$times" | awk '{print $1 + $2}' | sort -n | sed -n 2p)"
done
rm "$times"
