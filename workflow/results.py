"""Reading a folder of unlearning results: every `*eval_result.json` under it, with the labels
sweep.py left beside it (task.json) or that its sweep.json gives, into one row per run."""

import glob
import json
import math
import os

import paths
from workflow.stats import METRICS


def model_label(result):
    sparsity = float(result.get("sparsity") or 0.0)
    return "dense" if sparsity == 0 else f"{sparsity:.0f}% sparse"


def task_labels(result_path):
    """The labels sweep.py left in task.json beside a result, or {}."""
    try:
        with open(os.path.join(os.path.dirname(result_path), paths.TASK_FILE)) as f:
            return json.load(f).get("labels") or {}
    except (OSError, ValueError, AttributeError):
        return {}


def read_results(run_dir):
    """(list of results with their labels, list of problems) for every result under run_dir."""
    expected = {}
    manifest = os.path.join(run_dir, paths.SWEEP_MANIFEST)
    problems = []
    if os.path.isfile(manifest):
        try:
            with open(manifest) as f:
                tasks = json.load(f)["tasks"]
            expected = {os.path.abspath(t["result"]): t for t in tasks if t.get("labels")}
        except (OSError, ValueError, KeyError, TypeError) as err:
            problems.append(f"{manifest}: unreadable sweep manifest ({err}); summarising the result files found")
    found = {os.path.abspath(p) for p in glob.glob(os.path.join(glob.escape(run_dir), "**", paths.EVAL_JSON_GLOB), recursive=True)}
    rows = []
    for path in sorted(found | set(expected)):
        task = expected.get(path)
        if path not in found:
            problems.append(f"{path}: missing ({task['name']} has not finished or failed)")
            continue
        try:
            with open(path) as f:
                result = json.load(f)
            values = {m: float(result[m]) for m in (*METRICS, "RTE")}
        except (OSError, ValueError, KeyError, TypeError) as err:
            problems.append(f"{path}: unreadable ({type(err).__name__}: {err}); left out")
            continue
        if not all(math.isfinite(v) for v in values.values()):
            problems.append(f"{path}: holds a non-finite metric; left out")
            continue
        labels = (task or {}).get("labels") or task_labels(path)
        values["attack"] = held_out_attack_accuracy(result)
        rows.append(
            {
                "scenario": labels.get("scenario") or result.get("scenario", "?"),
                "method": result.get("method") or labels.get("method", "?"),
                "setting": labels.get("setting", ""),
                "options": setting_options(labels, result),
                "model": labels.get("model") or model_label(result),
                "sparsity": float(result.get("sparsity") or 0.0),
                "seed": (result.get("args") or {}).get("seed", labels.get("seed")),
                "train_seed": labels.get("train_seed"),
                "role": labels.get("role"),
                "calibration": result.get("calibration"),
                **values,
            }
        )
    return rows, problems


def held_out_attack_accuracy(result):
    """The confidence attack's balanced accuracy (percent) on held-out retain vs test samples, or None.

    main_forget.py's training-privacy evaluation fits the shadow SVC on half of the retain
    and test samples and scores the other halves: how well the attack behind MIA-Efficacy
    separates members from non-members at all.
    """
    try:
        value = 100.0 * float(result["SVC_MIA_training_privacy"]["confidence"])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def setting_options(labels, result):
    """The values of the options a setting varies: task.json's "options", or (results of an older
    sweep) the run's own arguments for the options its setting names."""
    if "options" in labels:
        return labels["options"]
    names = [part.partition("=")[0] for part in labels.get("setting", "").split(", ") if part]
    return {name: (result.get("args") or {}).get(name) for name in names}
