#!/usr/bin/env bash
# The Debian packages the tests use, installed where they are missing: Chromium (the drawing page's
# browser test), PostgreSQL (the shared Optuna studies), Fashion-MNIST (its reader's test), valgrind
# (the instruction counts of benchmarks/step_cost.py). As root, or with sudo that asks no password,
# they are installed; otherwise this stops with the one command to run. `make test` runs it first.
set -euo pipefail
missing=()
command -v chromium > /dev/null || missing+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" > /dev/null || missing+=(postgresql)
[ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
command -v valgrind > /dev/null || missing+=(valgrind)
((${#missing[@]})) || exit 0
apt=(apt-get)
if [ "$(id -u)" -ne 0 ]; then
  if ! sudo -n true 2> /dev/null; then
    echo "error: the tests need ${missing[*]}: run sudo apt-get install -y ${missing[*]}" >&2
    exit 2
  fi
  apt=(sudo apt-get)
fi
echo "installing the Debian packages the tests use: ${missing[*]}"
# A fresh machine may lack the package lists: read them, then try again.
"${apt[@]}" install -y --no-install-recommends "${missing[@]}" ||
  { "${apt[@]}" update && "${apt[@]}" install -y --no-install-recommends "${missing[@]}"; }
