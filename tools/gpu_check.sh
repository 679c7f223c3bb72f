#!/usr/bin/env bash
# The GPU check (docs/gpu.md). On a machine with a CUDA GPU and Python 3.12 with torch and
# torchvision, but without the MMEngine stack and without a network:
#   0. checks that torch sees a CUDA GPU (and writes what the machine has),
#   1. installs the pure-Python wheels of .whl/ (`make gpu-wheels` fetches them) into $SITE,
#   2. imports the stack and builds the tiny config's Runner,
#   3. lays out the plankton demo images from the planktonclas wheel in .whl/,
#   4. runs the GPU tests (pytest -m gpu),
#   5. runs the benchmark's GPU rows (ResNeXt101, batch 64, 224 px), and the training rows
#      again with half the loader workers when time is left.
# It writes at most 8 files, all directly in $OUT: summary.txt, environment.txt, setup.log,
# pytest.log, benchmark.log, benchmark.json, benchmark_cases.log, benchmark_workers.json.
# It prints the summary at the end and exits 0 only when every step passed.
#
#   PYTHON=/opt/torch/.venv/bin/python3 OUT=/tmp/gpu_check bash tools/gpu_check.sh
#
# Settings (environment): PYTHON (python3), OUT (work_dirs/gpu_check), SITE (/tmp/site),
# WORK (/tmp/gpu_check_work: data and checkpoints that are not kept), BUDGET (seconds for the
# whole check, 450), TEST_WORKERS (4), BATCH (64), WORKERS (loader workers, 8).
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
OUT=${OUT:-$REPO/work_dirs/gpu_check}
SITE=${SITE:-/tmp/site}
WORK=${WORK:-/tmp/gpu_check_work}
BUDGET=${BUDGET:-450}
TEST_WORKERS=${TEST_WORKERS:-4}
BATCH=${BATCH:-64}
WORKERS=${WORKERS:-8}
SUMMARY=$OUT/summary.txt
FAILED=0

mkdir -p "$OUT" "$WORK"
cd "$REPO" || exit 2
export REPO PYTHON SITE WORK BATCH
rm -f "$OUT"/{summary.txt,environment.txt,setup.log,pytest.log,benchmark.log,benchmark.json}
rm -f "$OUT"/{benchmark_cases.log,benchmark_workers.json}
export PYTHONPATH=$SITE:$REPO MPLBACKEND=Agg

left() { echo $((BUDGET - SECONDS)); }

# step NAME LOG SECONDS COMMAND...: run COMMAND, a program or a function of this script (its
# whole process group ends after SECONDS), output appended to LOG, a verdict in the summary
step() {
    local name=$1 log=$2 limit=$3 start=$SECONDS verdict rc
    shift 3
    echo "==== $name: $*" >>"$log"
    timeout --kill-after=15 "$limit" bash -c '"$@"' step "$@" >>"$log" 2>&1
    rc=$?
    case $rc in
        0) verdict=PASS ;;
        124 | 137) verdict="FAIL (over ${limit}s)" ;;
        *) verdict="FAIL (exit $rc)" ;;
    esac
    [ "$rc" -eq 0 ] || FAILED=1
    printf '%-30s %-18s %4ss  %s\n' "$name" "$verdict" $((SECONDS - start)) \
        "$(basename "$log")" >>"$SUMMARY"
    echo "$name: $verdict ($((SECONDS - start))s)"
    return "$rc"
}

# ---------------------------------------------------------------- the machine
{
    date -u
    echo "repository: $REPO ($(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo 'no git'))"
    nvidia-smi 2>&1 || echo 'nvidia-smi: not found'
    echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(nproc) cores"
    free -g | head -2
    "$PYTHON" - <<'EOF'
import sys
import torch
import torchvision
print('python', sys.version.split()[0], sys.executable)
print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'cuDNN',
      torch.backends.cudnn.version(), '| torchvision', torchvision.__version__)
print('CUDA available', torch.cuda.is_available(), '| devices', torch.cuda.device_count())
for i in range(torch.cuda.device_count()):
    print(f'  cuda:{i}', torch.cuda.get_device_name(i), 'capability',
          torch.cuda.get_device_capability(i), 'bf16', torch.cuda.is_bf16_supported())
if torch.cuda.is_available():
    import torch.distributed as dist
    print('NCCL available', dist.is_nccl_available(), 'version', torch.cuda.nccl.version())
EOF
} >"$OUT/environment.txt" 2>&1
{
    echo "GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
    grep -E '^(torch|  cuda:)' "$OUT/environment.txt"
    echo
    printf '%-30s %-18s %5s  %s\n' step verdict time log
} >"$SUMMARY"

# ---------------------------------------------------------------- set-up
step 'a CUDA GPU visible to torch' "$OUT/setup.log" 30 "$PYTHON" -c \
    'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "torch sees no CUDA GPU")'

install_wheels() {
    local wheels=()
    for wheel in "$REPO"/.whl/*.whl; do
        case $(basename "$wheel") in
            planktonclas-*) ;;  # data only: read as a zip archive, never installed
            *) wheels+=("$wheel") ;;
        esac
    done
    [ ${#wheels[@]} -gt 0 ] || { echo "no wheels in $REPO/.whl: run make gpu-wheels"; return 1; }
    if "$PYTHON" -m pip --version >/dev/null 2>&1; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$SITE" "${wheels[@]}" || return 1
    else  # no pip: a pure-Python wheel is a zip archive of its installed files
        "$PYTHON" - "$SITE" "${wheels[@]}" <<'EOF' || return 1
import sys
import zipfile
for wheel in sys.argv[2:]:
    zipfile.ZipFile(wheel).extractall(sys.argv[1])
EOF
    fi
    ls "$SITE" | grep dist-info
}

check_imports() {
    WORK=$WORK "$PYTHON" - <<'EOF'
import os
import bioplugin, mmcv, mmengine, mmpretrain, pkg_resources, pytorch_grad_cam, setuptools
print('mmengine', mmengine.__version__, '| mmcv', mmcv.__version__, '| mmpretrain',
      mmpretrain.__version__, '| setuptools', setuptools.__version__, '| bioplugin',
      bioplugin.__file__)
from bioplugin.apis import build_runner, build_train_config
cfg = build_train_config('tests/configs/bio_tiny.py', work_dir=os.path.join(
    os.environ['WORK'], 'runner'))
runner = build_runner(cfg)
print(type(runner).__name__, 'precision', runner.precision, '| optimizer wrapper',
      runner.cfg.optim_wrapper.type, '| hooks', [type(h).__name__ for h in runner.hooks])
EOF
}

export -f install_wheels check_imports

step 'install wheels' "$OUT/setup.log" 60 install_wheels &&
    step 'import stack, build Runner' "$OUT/setup.log" 60 check_imports
SETUP=$?
step 'demo images from .whl' "$OUT/setup.log" 30 \
    "$PYTHON" tools/data/fetch_plankton_demo.py data/plankton --wheel .whl

# ---------------------------------------------------------------- GPU tests
if [ "$SETUP" -eq 0 ]; then
    parallel=()
    if "$PYTHON" -c 'import xdist' 2>/dev/null; then
        parallel=(-n "$TEST_WORKERS" --dist loadgroup)
    fi
    step 'GPU tests (pytest -m gpu)' "$OUT/pytest.log" 240 \
        "$PYTHON" -m pytest -m gpu tests/test_gpu.py "${parallel[@]}" -p no:cacheprovider \
        --basetemp "$WORK/pytest" -v -ra --durations=30
fi

# ---------------------------------------------------------------- benchmark
benchmark() {  # benchmark WORK_SUBDIR JSON OPTIONS...
    local dir=$WORK/$1 json=$2
    shift 2
    rm -rf "$dir"
    "$PYTHON" tools/benchmark.py --device cuda --batch-size "$BATCH" --iters 10 --warmup 3 \
        --repeats 3 --image-size 500x375 --work-dir "$dir" --json "$json" --markdown "$@"
}

export -f benchmark

if [ "$SETUP" -eq 0 ] && [ "$(left)" -gt 120 ]; then
    step 'benchmark GPU rows' "$OUT/benchmark.log" $(($(left) - 40)) \
        benchmark bench "$OUT/benchmark.json" --only inference,training,amp,overhead \
        --num-workers "$WORKERS"
    BENCHMARK=$?
    if [ "$BENCHMARK" -eq 0 ] && [ "$(left)" -gt 100 ]; then
        step "training, $((WORKERS / 2)) loader workers" "$OUT/benchmark.log" $(($(left) - 15)) \
            benchmark bench_workers "$OUT/benchmark_workers.json" --only training \
            --num-workers $((WORKERS / 2))
    else
        echo "training with $((WORKERS / 2)) loader workers: left out ($([ "$BENCHMARK" -eq 0 ] &&
            echo "$(left)s left" || echo 'the benchmark failed'))" >>"$SUMMARY"
    fi
    for logs in "$WORK"/bench/logs "$WORK"/bench_workers/logs; do
        for log in "$logs"/*.log; do
            [ -f "$log" ] && { echo "==== $log"; cat "$log"; }
        done
    done >"$OUT/benchmark_cases.log" 2>&1
else
    echo "benchmark: left out ($( [ "$SETUP" -eq 0 ] && echo "$(left)s left" || echo 'set-up failed'))" \
        >>"$SUMMARY"
fi

# ---------------------------------------------------------------- summary
{
    echo
    if [ -f "$OUT/pytest.log" ]; then
        echo "GPU tests: $(grep -E '[0-9]+ (passed|failed|skipped|errors?)' "$OUT/pytest.log" |
            tail -1 | tr -d '=')"
        grep -E '^(FAILED|ERROR|SKIPPED)' "$OUT/pytest.log"
    fi
    if [ -f "$OUT/benchmark.log" ]; then
        echo
        grep -E '^(GPU: |CPU: |\| |FAIL |UNDECIDED |All targets)|batch [0-9]+, [0-9]+ workers' \
            "$OUT/benchmark.log"
    fi
    echo
    echo "took ${SECONDS}s of a ${BUDGET}s budget; $([ $FAILED -eq 0 ] && echo 'all steps passed' ||
        echo 'SOME STEPS FAILED: see the logs')"
} >>"$SUMMARY"
cat "$SUMMARY"
exit $FAILED
