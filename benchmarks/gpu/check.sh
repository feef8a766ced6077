#!/usr/bin/env bash
# Run THERE, on the lent GPU machine, in one device call (≤ 9 minutes in all): install the
# project and the wheels that benchmarks/gpu/prepare.sh fetched, run the tests marked `cuda`, the
# CLI end to end on the device, then the benchmarks, each step under its own timeout. Writes
# summary.md, steps.csv, eval.csv, overhead.csv, step_time.csv, stacked.csv, jobs.csv and log.txt
# into $OUT (./gpu-out when unset): at most 8 files, as the device tool brings back.
#
#   bash benchmarks/gpu/check.sh [--device cuda] [--tiny] [--no-install]
#   DRY_RUN=1 uv run bash benchmarks/gpu/check.sh --no-install      # here, on the CPU
#
# --device: the torch device (default cuda). --tiny (and DRY_RUN=1, which also sets --device
# cpu): sizes small enough for a 2-core CPU. --no-install: the running python already has the
# harness and its dependencies (uv run here). BUDGET_S (default 500; tiny 3600) caps the whole
# script; each step gets its own timeout (times TIMEOUT_SCALE: 1, tiny 8), never more than the
# budget left.
set -uo pipefail
cd "$(dirname "$0")/../.."
DEVICE=cuda TINY=0 INSTALL=1
[[ "${DRY_RUN:-0}" == 1 ]] && DEVICE=cpu TINY=1
while (($#)); do
    case "$1" in
    --device) DEVICE=$2 && shift ;;
    --tiny) TINY=1 ;;
    --no-install) INSTALL=0 ;;
    *) echo "check.sh: unknown option $1 (--device D, --tiny, --no-install)" >&2 && exit 2 ;;
    esac
    shift
done
OUT=${OUT:-./gpu-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d)
PY=${PYTHON:-python3}
BUDGET=${BUDGET_S:-$((TINY ? 3600 : 500))}
SCALE=${TIMEOUT_SCALE:-$((TINY ? 8 : 1))}  # a 2-core CPU needs longer, even at tiny sizes
export PYTHONUNBUFFERED=1 HARNESS_CACHE_DIR=$WORK/cache HARNESS_TEST_DEVICE=$DEVICE
export MLFLOW_TRACKING_URI=sqlite:///$WORK/cli/mlflow.db
mkdir -p "$WORK/cli"  # the CLI refuses a store in a folder that does not exist
: >"$OUT/log.txt"
echo "step,status,rc,seconds,timeout_s" >"$OUT/steps.csv"

# step NAME TIMEOUT CMD...: stdout to $WORK/NAME.md, both streams to the log; records the outcome
step() {
    local name=$1 limit=$2 left rc start
    shift 2
    limit=$((limit * SCALE)) left=$((BUDGET - SECONDS - 5))
    ((limit > left)) && limit=$left
    if ((limit < 10)); then
        echo "$name,skipped (budget spent),,0,0" >>"$OUT/steps.csv"
        return
    fi
    echo "== $name (timeout ${limit}s): $*" | tee -a "$OUT/log.txt"
    start=$SECONDS
    timeout -k 5 "$limit" bash -c '"$@"' _ "$@" > >(tee "$WORK/$name.md" >>"$OUT/log.txt") 2>>"$OUT/log.txt"
    rc=$?
    local status=ok
    ((rc == 124 || rc == 137)) && status=timeout
    ((rc != 0 && rc != 124 && rc != 137)) && status=failed
    echo "$name,$status,$rc,$((SECONDS - start)),$limit" | tee -a "$OUT/steps.csv"
}

install_wheels() {
    local site=$WORK/site
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --ignore-requires-python --target "$site" benchmarks/gpu/wheels/*.whl || return
    # the checkout's source first (the wheel brings the entry points' metadata)
    echo "export PYTHONPATH=$PWD:$site" >"$WORK/env.sh"
    PYTHONPATH=$PWD:$site "$PY" -m pip check 2>&1 | grep -v '^No broken' || true
    PYTHONPATH=$PWD:$site "$PY" -c 'import mlflow, torch_fidelity, ot, mlxtend, pydantic, harness
import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
}

cli() {  # the CLI end to end, as a user would: two smoke suites, a table and a report
    local h=("$PY" -m harness.cli)
    "${h[@]}" run suites/toy_modes.yaml -p smoke --device "$DEVICE" &&
        "${h[@]}" run suites/mnist_modes.yaml -p smoke --device "$DEVICE" --jobs 2 &&
        "${h[@]}" table suites/mnist_modes.yaml &&
        "${h[@]}" report suites/mnist_modes.yaml --out "$WORK/report" &&
        test -s "$WORK/report/report.html"
}

export -f install_wheels cli
export PY WORK DEVICE

csv_of_tables() {  # the markdown tables of a step's output, as one CSV
    "$PY" - "$@" <<'EOF'
import csv, sys
rows = [l.strip().strip("|").split("|") for l in open(sys.argv[1]) if l.startswith("|")]
rows = [[c.strip() for c in r] for r in rows if not set("".join(r)) <= set("-: ")]
csv.writer(open(sys.argv[2], "w", newline="")).writerows(rows)
EOF
}

if ((TINY)); then
    EVAL=(--samples 500) OVER=(--steps 2 --repeats 1 --constraints none,gradient_penalty)
    STEP=(--steps 3 --tiny) COMPILE=(--steps 3 --tiny --suites toy_modes)
    JOBS=(--jobs 1,2 --steps 2 --seeds 0 --tiny) STACK=(--members 1,2 --steps 1 --archs sweep)
else
    EVAL=(--samples 10000) OVER=(--steps 50 --repeats 3 --full-width)
    STEP=(--steps 100) COMPILE=(--steps 100) JOBS=(--jobs 1,4,8,16 --steps 100)
    STACK=(--members 1,4,16,48 --steps 10)
fi

if ((INSTALL)); then
    step install 40 install_wheels
    [[ -f $WORK/env.sh ]] && source "$WORK/env.sh"
fi
step tests 90 "$PY" -m pytest -m cuda tests/test_cuda.py -q -p no:cacheprovider -rs
step cli 50 cli
step eval 30 "$PY" benchmarks/eval_throughput.py --device "$DEVICE" "${EVAL[@]}"
step overhead 55 "$PY" benchmarks/overhead.py --device "$DEVICE" --archs toy,mnist "${OVER[@]}"
step step_time 50 "$PY" benchmarks/gpu/step_time.py --device "$DEVICE" --modes fp32,bf16 \
    --csv "$WORK/step_time.csv" "${STEP[@]}"
step compile 50 "$PY" benchmarks/gpu/step_time.py --device "$DEVICE" --modes compile \
    --csv "$WORK/compile.csv" "${COMPILE[@]}"
step stacked 45 "$PY" benchmarks/stacked_step.py --device "$DEVICE" --csv "$OUT/stacked.csv" \
    "${STACK[@]}"
step jobs 100 "$PY" benchmarks/gpu/jobs.py --device "$DEVICE" --csv "$OUT/jobs.csv" "${JOBS[@]}"

csv_of_tables "$WORK/eval.md" "$OUT/eval.csv"
csv_of_tables "$WORK/overhead.md" "$OUT/overhead.csv"
cat "$WORK/step_time.csv" >"$OUT/step_time.csv" 2>/dev/null
tail -n +2 "$WORK/compile.csv" >>"$OUT/step_time.csv" 2>/dev/null
{
    echo "# GPU check: $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null)"
    echo
    echo "device $DEVICE, tiny $TINY; $("$PY" -c 'import torch, platform
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
print(f"python {platform.python_version()}, torch {torch.__version__}, {gpu}")')"
    echo
    echo '| step | status | rc | seconds | timeout s |'
    echo '|---|---|---:|---:|---:|'
    tail -n +2 "$OUT/steps.csv" | sed 's/,/ | /g; s/^/| /; s/$/ |/'
    for name in eval overhead step_time compile stacked jobs; do
        [[ -s $WORK/$name.md ]] && printf '\n## %s\n\n' "$name" && cat "$WORK/$name.md"
    done
    printf '\n## tests and CLI (last lines)\n\n```\n'
    tail -n 4 "$WORK/tests.md" 2>/dev/null
    tail -n 12 "$WORK/cli.md" 2>/dev/null
    printf '```\n'
} >"$OUT/summary.md"
echo "wrote $OUT: $(ls "$OUT" | tr '\n' ' ')"
! grep -q ',failed,\|,timeout,' "$OUT/steps.csv"
