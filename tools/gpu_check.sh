#!/usr/bin/env bash
# The checks a session lent a GPU runs there, in two commands that each fit the
# device tool's 10-minute limit and together its 15 minutes of device time:
#   bash tools/gpu_check.sh speed            the suite, then the benchmark on CUDA
#   bash tools/gpu_check.sh salt [MINUTES]   salt-gpu for MINUTES (default 6), scored
#                                            on 500 images it never saw
# Prepare here first (git-ignored, carried with carry ["gpu"]):
#   echo /gpu/ >> .git/info/exclude && mkdir -p gpu/whl
#   cp -r ../shared/tgs-salt/train gpu/tgs          # 52 MB of the 64 MiB that travel
#   python3 -m pip wheel --no-deps -w gpu/whl imutils   # the one package it lacks
# Every log and score file lands in $OUT, which the device tool brings back;
# progress bars go to /tmp and only a failing step's last lines are shown.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ! python3 -c "import imutils" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site gpu/whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"

# run a step with its stdout kept in $OUT/$1, its stderr shown only if it fails
step() {
    local name=$1
    shift
    "$@" 2> "/tmp/$name.err" | tee "$OUT/$name" || { tail -n 20 "/tmp/$name.err"; return 1; }
}

case "${1:-}" in
speed)
    step suite.txt python3 -m pytest -q -x -n 8 -p no:cacheprovider
    step epoch.txt python3 -m tools.benchmark --dataset-path gpu/tgs --device cuda
    step whole.txt python3 -m tools.benchmark --dataset-path gpu/tgs --device cuda --whole-process 3
    ;;
salt)
    minutes=${2:-6}
    holdout=/tmp/gpu_check_holdout run=/tmp/gpu_check_run
    rm -rf "$holdout" "$run"
    python3 -m tools.holdout --dataset-path gpu/tgs --out "$holdout" > /dev/null || exit 1
    step train.txt python3 train.py --preset salt-gpu --time-budget "$minutes" \
        --dataset-path "$holdout/dev" --seed 1 --base-output "$run" || exit 1
    cp "$run/history.csv" "$OUT/history.csv"
    for model in unet_tgs_salt unet_tgs_salt_last; do
        step "$model.txt" python3 predict.py --base-output "$run" --model-path "$run/$model.pth" \
            --evaluate --test-paths "$holdout/test_paths.txt" --scores-out "$OUT/$model.csv"
    done
    ;;
*)
    echo "usage: bash tools/gpu_check.sh speed | salt [MINUTES]" >&2
    exit 2
    ;;
esac
