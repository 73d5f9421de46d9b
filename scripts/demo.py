"""The whole pipeline on the bundled digits data: prune first, then unlearn, then the table.

    python scripts/demo.py [--out runs/demo]

1. main_imp.py: a dense resnet20s and a 95%-sparse one (OMP, rewound to epoch 2).
2. main_forget.py: every method from both, forgetting the whole class 0.
3. A table of UA, MIA-Efficacy, RA, TA and RTE per method and sparsity, as in the paper.
About 8 minutes on 2 CPU cores. It runs the entry scripts as commands and imports none.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMON = ["--dataset", "digits", "--arch", "resnet20s", "--batch_size", "64"]
IMP = [
    "--epochs",
    "15",
    "--decreasing_lr",
    "8,12",
    "--rate",
    "0.95",
    "--pruning_times",
    "2",
    "--prune_type",
    "rewind_lt",
    "--rewind_epoch",
    "2",
]
# Per-method settings for digits (the paper's CIFAR-10 ones are in the README).
METHODS = {
    "retrain": ["--unlearn_epochs", "10", "--unlearn_lr", "0.1", "--decreasing_lr", "6,8"],
    "FT": ["--unlearn_epochs", "5", "--unlearn_lr", "0.01"],
    "GA": ["--unlearn_epochs", "5", "--unlearn_lr", "0.001"],
    "fisher_new": [],
    "wfisher": [],
    "FT_prune": ["--unlearn_epochs", "5", "--unlearn_lr", "0.05"],
}
NAMES = {"retrain": "Retrain", "FT": "FT", "GA": "GA", "fisher_new": "FF", "wfisher": "IU", "FT_prune": "l1-sparse"}
MODELS = {"dense": "0model_SA_best.pth.tar", "95% sparse": "1model_SA_best.pth.tar"}


def run(script, *args):
    cmd = [sys.executable, os.path.join(ROOT, script), *COMMON, *args]
    print("$ python", shlex.join([script, *cmd[2:]]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def table(rows):
    header = ["method", "model", "UA", "MIA-Efficacy", "RA", "TA", "RTE (min)"]
    lines = [" | ".join(header), " | ".join("---" for _ in header)]
    for r in rows:
        lines.append(
            f"{r['name']} | {r['model']} | {r['UA']:.2f} | {r['MIA-Efficacy']:.2f} | {r['RA']:.2f} | {r['TA']:.2f} | {r['RTE']:.3f}"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(ROOT, "runs", "demo"))
    args = parser.parse_args()
    start = time.time()
    imp_dir = os.path.join(args.out, "imp")
    run("main_imp.py", *IMP, "--save_dir", imp_dir)
    rows = []
    for model, checkpoint in MODELS.items():
        save_dir = os.path.join(args.out, "unlearn_" + model.replace("% ", "_"))
        for method, options in METHODS.items():
            run("main_forget.py", "--mask", os.path.join(imp_dir, checkpoint), "--unlearn", method, *options, "--save_dir", save_dir)
            with open(os.path.join(save_dir, f"{method}eval_result.json")) as f:
                rows.append({"name": NAMES[method], "model": model, **json.load(f)})
    rows.sort(key=lambda r: (list(NAMES.values()).index(r["name"]), list(MODELS).index(r["model"])))
    text = table(rows)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(text + "\n")
    print(f"\nClass-wise forgetting of digit 0, resnet20s on digits ({(time.time() - start) / 60:.1f} min in all):\n")
    print(text)


if __name__ == "__main__":
    main()
