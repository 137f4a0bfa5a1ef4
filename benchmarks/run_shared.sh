#!/usr/bin/env bash
# Run the shared benchmark harness on spectralmatch against the I/O floor, in one run.
#
#   bash benchmarks/run_shared.sh [WORKDIR] [extra run.py arguments...]
#   SM_ARGS=--no-local bash benchmarks/run_shared.sh          # global model only
#   bash benchmarks/run_shared.sh bench-work --only scale-9x3000 --repeat 2
#
# WORKDIR (default: ./bench-work, git-ignored) receives the generated cases and outputs;
# the scale case is made with: python ../shared/bench/prepare.py bench-cases --scale 9 --size 3000
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bench="${BENCH:-$here/../shared/bench}"
work="${1:-$here/bench-work}"; shift || true
mkdir -p "$work" && cd "$work"
[ -d bench-cases/mosaic-landsat ] || python "$bench/prepare.py"
# shellcheck disable=SC2086
python "$bench/run.py" --cases bench-cases --out bench-out --repeat 3 \
  --compare "python $bench/runners/rewrite.py {input} {output}" --label-b io-floor \
  --label spectralmatch "$@" \
  -- spectralmatch match {input} -o {output} --reference {reference} --no-cache ${SM_ARGS:-}
