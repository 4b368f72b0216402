#!/usr/bin/env bash
# GPU suite (issue 17): every GPU measurement of lrpseg in one call, within 9 minutes on one H100/H200.
#
#   bash benchmarks/gpu_suite.sh --prepare          # once, where the package registry is reachable: the zennit
#                                                   # wheel into .whl/, the Magnetic Tile classes into .gpu_data/
#   bash benchmarks/gpu_suite.sh OUTDIR             # on the GPU machine: reports into OUTDIR
#   bash benchmarks/gpu_suite.sh --cpu-tiny OUTDIR  # tiny CPU rehearsal of every step (or GPU_SUITE_CPU_TINY=1)
#
# With this workplace's device tool (from the repository root, after --prepare there):
#   run(command="bash benchmarks/gpu_suite.sh $OUT", carry=[".whl", ".gpu_data"], timeout_s=600)
#
# Parts, in this order (cheap and certain first; each continues when an earlier one fails):
#   1. benchmarks/lrp_speed.py --device cuda: batch 1 and 64, forward, gradient, our two rule sets and the same
#      rules from zennit's stock hooks, 10 interleaved rounds (about 30 s).
#   2. benchmarks/train_speed.py --device cuda --amp: 1,000 labelled images at 224², 30 epochs, full width, the
#      product's trainer (core.train.fit) and the device trainer (bf16), each after a warm-up (about 1-2 min).
#   3. benchmarks/magnetic_tile.py --amp: the paper's configuration (width 1, input 224, all images, patience 20,
#      U-Net 32 channels / 200 epochs), both heads, the rule sets of the last CPU run (ours montavon epsilon_plus
#      epsilon_gamma_box), the student rows where magnetic_tile.py has them. Its one reduction: the classifier
#      epoch cap, at most the paper's 100, set from the training rate part 2 measured so that both classifiers
#      fit in the seconds left after the other stages' estimates (MT_FIXED_S below); a hard time limit behind it.
#   4. gpu.md: OUTDIR/gpu.md and benchmarks/results/gpu.md (GPU runs only), ending with
#      RESULT lrp_ours_img_s_b64=<n> lrp_montavon_img_s_b64=<n> zennit_ours_img_s_b64=<n> train_1000_s=<s> device=<GPU>
#
# OUTDIR receives at most 8 files (the device tool brings back no more): suite.log, gpu.md, lrp_speed.json,
# train_speed.json, magnetic_tile.md, magnetic_tile.json, magnetic_tile_figures.tar.gz.
#
# Environment: PYTHON (default .venv/bin/python if present, else python3); MT_DATA (dataset folder; default
# .gpu_data/magnetic_tile, else ../shared/datasets/magnetic_tile); WHEELS (default .whl); GPU_SUITE_BUDGET_S
# (default 540); MT_EXTRA_ARGS (appended to magnetic_tile.py's arguments); GPU_SUITE_FORCE_INSTALL=1 installs
# from the wheels even where the packages are present (to test the install step).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 2
PY=${PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
WHEELS=${WHEELS:-.whl}
SITE=/tmp/lrpseg_gpu_site
BUDGET=${GPU_SUITE_BUDGET_S:-540}
RULE_SETS=(ours montavon epsilon_plus epsilon_gamma_box)
MT_CLASSES=(MT_Blowhole MT_Crack MT_Free)
# Seconds magnetic_tile.py spends outside the classifiers on an H100/H200 (estimates from the CPU run's stage
# times and the probe's GPU rates): read + group 1,124 images (~1 s of OpenCV per 1,000 image pairs, 16 threads)
# 70, LRP + segmenters of 4 rule sets x 2 heads 50, U-Net 200 epochs 60, figures and report 20, margin 20.
MT_FIXED_S=220
MT_STUDENT_S=120    # the student rows (fewer settings than their defaults, see below), when magnetic_tile.py has them
REPORT_RESERVE_S=20 # gpu.md and the copies after magnetic_tile.py

die() {
    echo "gpu_suite: $*" >&2
    exit 2
}

prepare() {
    local data=${MT_DATA:-$REPO/../shared/datasets/magnetic_tile}
    mkdir -p "$WHEELS" .gpu_data/magnetic_tile || die "cannot create $WHEELS or .gpu_data"
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d "$WHEELS" zennit==0.5.1 ||
        die "pip could not download zennit==0.5.1 into $WHEELS"
    for cls in "${MT_CLASSES[@]}"; do
        [ -d "$data/$cls" ] || die "$data/$cls not found: set MT_DATA to the Magnetic Tile dataset folder"
        rm -rf ".gpu_data/magnetic_tile/$cls"
        cp -al "$data/$cls" ".gpu_data/magnetic_tile/$cls" 2>/dev/null || cp -r "$data/$cls" ".gpu_data/magnetic_tile/$cls" ||
            die "cannot copy $data/$cls"
    done
    for folder in "$WHEELS" .gpu_data; do
        git check-ignore -q "$folder" || die "$folder is not git-ignored: it would travel twice (as a file of the tree and carried)"
    done
    local tree
    tree=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
    local carried
    carried=$(du -cb "$WHEELS" .gpu_data | tail -1 | cut -f1)
    echo "prepared: $(ls "$WHEELS") in $WHEELS; ${MT_CLASSES[*]} in .gpu_data/magnetic_tile"
    echo "travels: working tree $((tree / 1048576)) MiB + carried $((carried / 1048576)) MiB (the device tool takes 64 MiB)"
    [ $((tree + carried)) -lt $((62 * 1048576)) ] || echo "WARNING: over 62 MiB: remove untracked files first" >&2
}

ensure_packages() {
    # The GPU machine has torch, OpenCV, scikit-learn and scipy but neither zennit nor lrpseg, and no registry:
    # zennit comes as a carried wheel; lrpseg.core is linked to this checkout's core/ with its version metadata
    # (what an editable install amounts to; no build tools needed there).
    local installed=0
    if [ "${GPU_SUITE_FORCE_INSTALL:-0}" = 1 ] || ! "$PY" -c "import zennit" 2>/dev/null; then
        compgen -G "$WHEELS/zennit-*.whl" >/dev/null ||
            die "zennit is not installed and $WHEELS/ has no zennit wheel: run 'bash benchmarks/gpu_suite.sh --prepare' where the package registry is reachable, and carry $WHEELS"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
            "$WHEELS"/*.whl || die "installing the wheels in $WHEELS failed"
        installed=1
    fi
    if [ "${GPU_SUITE_FORCE_INSTALL:-0}" = 1 ] || ! "$PY" -c "import lrpseg.core" 2>/dev/null; then
        local version
        version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -1)
        mkdir -p "$SITE/lrpseg" "$SITE/lrpseg-$version.dist-info" || die "cannot write $SITE"
        ln -sfn "$REPO/core" "$SITE/lrpseg/core"
        printf 'Metadata-Version: 2.1\nName: lrpseg\nVersion: %s\n' "$version" >"$SITE/lrpseg-$version.dist-info/METADATA"
        installed=1
    fi
    if [ "$installed" = 1 ]; then
        export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
        echo "installed into $SITE: $(ls "$SITE" | tr '\n' ' ')"
    fi
    "$PY" -c "import zennit, lrpseg.core.lrp, cv2, sklearn, scipy, safetensors" ||
        die "$PY still lacks a package lrpseg needs (see the error above)"
}

STAGES=()
FAILED=0
# run_part NAME SECONDS COMMAND...: run with a hard time limit, record the part's time and outcome.
run_part() {
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS rc status
    echo
    echo "=== $name (limit ${limit} s, ${SECONDS} s into the suite): $*"
    timeout --kill-after=10 "$limit" "$@"
    rc=$?
    case $rc in
        0) status=ok ;;
        124 | 137) status="timed out after ${limit} s" ;;
        *) status="failed (exit $rc)" ;;
    esac
    [ "$rc" = 0 ] || FAILED=1
    STAGES+=(--stage "$name|$((SECONDS - start))|$status")
    echo "=== $name: $status in $((SECONDS - start)) s"
}

TINY=${GPU_SUITE_CPU_TINY:-0}
OUTDIR=
while [ $# -gt 0 ]; do
    case $1 in
        --prepare) prepare; exit 0 ;;
        --cpu-tiny) TINY=1 ;;
        -h | --help) sed -n '2,34p' "$0"; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) [ -z "$OUTDIR" ] || die "one OUTDIR only"; OUTDIR=$1 ;;
    esac
    shift
done
[ -n "$OUTDIR" ] || die "usage: bash benchmarks/gpu_suite.sh [--cpu-tiny] OUTDIR (or --prepare); see --help"
mkdir -p "$OUTDIR" || die "cannot create $OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
export PYTHONUNBUFFERED=1

suite() {
echo "gpu_suite $(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -n); repo $REPO ($(git rev-parse --short HEAD 2>/dev/null || echo 'no git')); python $PY"

if [ "$TINY" = 1 ]; then
    export OMP_NUM_THREADS=1 # the CPU rehearsal runs on a shared machine
    DEVICE_NAME=cpu
    echo "CPU TINY REHEARSAL: every step at toy sizes; the numbers mean nothing"
else
    "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" ||
        die "torch ($PY) sees no CUDA GPU: this suite measures the GPU. For the CPU rehearsal: bash benchmarks/gpu_suite.sh --cpu-tiny OUTDIR"
    DEVICE_NAME=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0))")
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null || true
fi
ensure_packages
"$PY" -c "import torch, zennit, lrpseg.core as c; print('torch', torch.__version__, '| zennit', zennit.__file__, '| lrpseg', c.__version__, c.__file__)"

DATA=
for candidate in "${MT_DATA:-}" "$REPO/.gpu_data/magnetic_tile" "$REPO/../shared/datasets/magnetic_tile"; do
    if [ -n "$candidate" ] && [ -d "$candidate/MT_Free" ]; then DATA=$candidate; break; fi
done
[ -n "$DATA" ] || die "no Magnetic Tile dataset (MT_DATA, .gpu_data/magnetic_tile or ../shared/datasets/magnetic_tile): run --prepare and carry .gpu_data"
N_IMAGES=$(find "${MT_CLASSES[@]/#/$DATA/}" -name '*.jpg' | wc -l)
echo "Magnetic Tile data: $DATA ($N_IMAGES images in ${MT_CLASSES[*]})"

WORK=$(mktemp -d /tmp/gpu_suite.XXXXXX)
if [ "$TINY" = 1 ]; then
    LRP_ARGS=(--device cpu --size 64 --width 0.125 --batch-sizes 1 2 --rounds 2 --threads 1)
    TRAIN_ARGS=(--device cpu --images 16 --distinct 4 --size 64 --epochs 1 --width 0.125 --threads 1)
else
    LRP_ARGS=(--device cuda --batch-sizes 1 64 --rounds 10)
    TRAIN_ARGS=(--device cuda --amp)
fi
run_part "LRP speed" 150 "$PY" benchmarks/lrp_speed.py "${LRP_ARGS[@]}" --json "$WORK/lrp_speed.json"
run_part "training time" 240 "$PY" benchmarks/train_speed.py "${TRAIN_ARGS[@]}" --json "$WORK/train_speed.json"

MT_ARGS=(--data "$DATA" --out "$WORK/mt" --rule-sets "${RULE_SETS[@]}")
HAS_STUDENTS=0
grep -q -- '"--student-epochs"' benchmarks/magnetic_tile.py && HAS_STUDENTS=1 # its --help costs a torch import
LEFT=$((BUDGET - SECONDS - REPORT_RESERVE_S))
if [ "$TINY" = 1 ]; then
    MT_ARGS+=(--quick)
    MT_NOTE="CPU rehearsal: magnetic_tile.py --quick (tiny, numbers meaningless)."
    LEFT=600
else
    LEFT=$((LEFT < 120 ? 120 : LEFT)) # timeout 0 would mean no limit; below ~2 min it cannot finish anyway
    FOR_CLASSIFIERS=$((LEFT - MT_FIXED_S - HAS_STUDENTS * MT_STUDENT_S))
    N_TRAIN=$((N_IMAGES * 6 / 10))
    EPOCHS=$("$PY" benchmarks/gpu_report.py epochs --train "$WORK/train_speed.json" --n-train "$N_TRAIN" \
        --seconds "$FOR_CLASSIFIERS") || EPOCHS=40
    RATE="at the training rate part 2 measured with the same trainer"
    [ -f "$WORK/train_speed.json" ] || RATE="by a fixed fallback, as part 2 measured no training rate"
    MT_NOTE="Classifier epoch cap $EPOCHS (the paper's: 100, patience 20): what fits in $FOR_CLASSIFIERS s for both heads $RATE ($LEFT s left for magnetic_tile.py; ${MT_FIXED_S} s kept for its other stages$([ $HAS_STUDENTS = 1 ] && echo ", ${MT_STUDENT_S} s for the students"))."
    LABEL="GPU run on $DEVICE_NAME: the paper's configuration (width 1, input 224, all images, U-Net 32 channels / 200 epochs, bf16 autocast)"
    [ "$EPOCHS" -lt 100 ] && LABEL="$LABEL except the classifier epoch cap, $EPOCHS instead of 100, to fit the 9-minute GPU suite"
    MT_ARGS+=(--amp --epochs "$EPOCHS" --label "$LABEL")
    if [ "$HAS_STUDENTS" = 1 ]; then
        # One teacher segmenter (bmm, the best on the CPU run) instead of all three: three times fewer students.
        MT_ARGS+=(--student-segmenters bmm)
        MT_NOTE="$MT_NOTE Students: teacher segmenter bmm only."
    fi
fi
# shellcheck disable=SC2206 # MT_EXTRA_ARGS is split into words on purpose
[ -n "${MT_EXTRA_ARGS:-}" ] && MT_ARGS+=(${MT_EXTRA_ARGS}) && MT_NOTE="$MT_NOTE Extra arguments: ${MT_EXTRA_ARGS}."
echo "$MT_NOTE"
run_part "Magnetic Tile" "$LEFT" "$PY" benchmarks/magnetic_tile.py "${MT_ARGS[@]}"

REPORTS=("$OUTDIR/gpu.md")
if [ "$TINY" = 1 ]; then
    TITLE="CPU TINY REHEARSAL of the GPU suite (toy sizes; the numbers mean nothing)"
else
    TITLE="GPU suite on $DEVICE_NAME"
    REPORTS+=("$REPO/benchmarks/results/gpu.md")
fi
for name in lrp_speed.json train_speed.json; do [ -f "$WORK/$name" ] && cp "$WORK/$name" "$OUTDIR/"; done
for name in magnetic_tile.md magnetic_tile.json; do [ -f "$WORK/mt/$name" ] && cp "$WORK/mt/$name" "$OUTDIR/"; done
if compgen -G "$WORK/mt/*.png" >/dev/null; then
    (cd "$WORK/mt" && tar -czf "$OUTDIR/magnetic_tile_figures.tar.gz" ./*.png)
fi
MT_JSON=()
[ -f "$WORK/mt/magnetic_tile.json" ] && MT_JSON=(--mt "$WORK/mt/magnetic_tile.json")
"$PY" benchmarks/gpu_report.py report --lrp "$WORK/lrp_speed.json" --train "$WORK/train_speed.json" \
    "${MT_JSON[@]}" --mt-note "$MT_NOTE" "${STAGES[@]}" --stage "whole suite|$SECONDS|budget ${BUDGET} s" \
    --device "$DEVICE_NAME" --title "$TITLE" --out "${REPORTS[@]}" >/dev/null || FAILED=1
rm -rf "$WORK"
echo
echo "reports in $OUTDIR: $(ls "$OUTDIR" | tr '\n' ' ')"
[ "${#REPORTS[@]}" -gt 1 ] && echo "gpu.md also written to ${REPORTS[*]:1}"
echo "suite: $SECONDS s, $([ $FAILED = 0 ] && echo 'every part ok' || echo 'a part FAILED, see above')"
tail -1 "$OUTDIR/gpu.md" 2>/dev/null || echo "no gpu.md written"
return $FAILED
}

suite 2>&1 | tee "$OUTDIR/suite.log"
exit "${PIPESTATUS[0]}"
