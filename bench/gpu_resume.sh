#!/usr/bin/env bash
# CUDA: SIGTERM in the middle of main_imp.py training and of FT unlearning, then --resume;
# each resumed run must continue after its last saved epoch. Usage: bench/gpu_resume.sh WORK_DIR
set -uo pipefail
W=${1:-runs/gpu_resume}
PY=${PYTHON:-python3}
D=(--dataset digits --arch resnet20s --batch_size 64 --gpu 0)
rm -rf "$W"; mkdir -p "$W"
$PY main_imp.py "${D[@]}" --epochs 120 --pruning_times 1 --save_dir "$W/imp" > "$W/imp1.log" 2>&1 & pid=$!
sleep 14; kill -TERM $pid; wait $pid; echo "main_imp SIGTERM exit $?"
$PY main_imp.py "${D[@]}" --epochs 120 --pruning_times 1 --save_dir "$W/imp" --resume 2>&1 | grep -E "resumed from|error|Traceback|state 0 done"
$PY main_forget.py "${D[@]}" --mask "$W/imp/0model_SA_best.pth.tar" --unlearn FT --unlearn_epochs 120 --save_dir "$W/ft" > "$W/ft1.log" 2>&1 & pid=$!
sleep 14; kill -TERM $pid; wait $pid; echo "main_forget SIGTERM exit $?"
$PY main_forget.py "${D[@]}" --mask "$W/imp/0model_SA_best.pth.tar" --unlearn FT --unlearn_epochs 120 --save_dir "$W/ft" --resume 2>&1 \
    | grep -E "continues after|error|Traceback|^FT:"
