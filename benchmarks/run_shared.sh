#!/usr/bin/env bash
# Run the shared benchmark harness on spectralmatch against the I/O floor, in one run.
#
#   bash benchmarks/run_shared.sh [WORKDIR] [extra run.py arguments...]
#
# WORKDIR (default: ./bench-work, git-ignored) receives the generated cases and outputs.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bench="${BENCH:-$here/../shared/bench}"
work="${1:-$here/bench-work}"; shift || true
mkdir -p "$work" && cd "$work"
[ -d bench-cases/mosaic-landsat ] || python "$bench/prepare.py"
python "$bench/run.py" --cases bench-cases --out bench-out --repeat 3 \
  --compare "python $bench/runners/rewrite.py {input} {output}" --label-b io-floor \
  --label spectralmatch "$@" \
  -- spectralmatch match {input} -o {output} --reference {reference} --no-local
