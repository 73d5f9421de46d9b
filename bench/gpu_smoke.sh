#!/usr/bin/env bash
# A CUDA smoke run of the pipeline on digits (prune, then every unlearning method, with the
# GPU options), then the tests that exercise the GPU code paths. Usage: bench/gpu_smoke.sh OUT_DIR
set -euo pipefail
OUT=${1:-runs/gpu_smoke}
PY=${PYTHON:-python3}
COMMON=(--dataset digits --arch resnet20s --batch_size 64 --gpu 0)
mkdir -p "$OUT"
$PY main_imp.py "${COMMON[@]}" --epochs 4 --rate 0.5 --pruning_times 2 --prune_type rewind_lt --rewind_epoch 1 \
    --amp --channels_last --save_dir "$OUT/imp"
for method in raw retrain FT GA fisher_new wfisher FT_prune FT_l1 GA_l1 fisher FT_prune_bi retrain_ls retrain_sam; do
    $PY main_forget.py "${COMMON[@]}" --mask "$OUT/imp/1model_SA_best.pth.tar" --unlearn "$method" \
        --unlearn_epochs 2 --save_dir "$OUT/forget"
    $PY -c "import json,sys; r=json.load(open(sys.argv[1])); print(sys.argv[2], {k: round(v, 2) for k, v in r.items() if isinstance(v, float)})" \
        "$OUT/forget/${method}eval_result.json" "$method"
done
$PY main_synflow.py "${COMMON[@]}" --epochs 2 --rate 0.9 --save_dir "$OUT/synflow"
$PY main_backdoor.py "${COMMON[@]}" --epochs 2 --num_indexes_to_replace 130 --rate 0.9 --rewind_epoch 1 --mask "$OUT/backdoor/mask.pth.tar" \
    --unlearn FT --unlearn_epochs 1 --save_dir "$OUT/backdoor"
