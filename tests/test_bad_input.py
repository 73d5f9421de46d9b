"""Every checked bad input through the real command line: exit 2, one line, nothing written.

docs/reliability.md's "Bad input" table lists the same cases; `test_the_readme_lists_every_case`
keeps the two in step.
"""

import os
import re

import pytest
import torch

from tests.conftest import ROOT, run_script
from tests.script_server import ScriptServer
from tests.test_reliability import Payload

pytestmark = pytest.mark.slow  # every case through the real command line

D = ["--dataset", "digits", "--arch", "resnet20s"]
FORGET = [*D, "--mask", "{r20}", "--unlearn", "FT"]
PRUNE_BI = [*D, "--mask", "{r20}", "--unlearn", "FT_prune_bi"]
SALUN = [*D, "--mask", "{r20}", "--unlearn", "SalUn"]
REWIND = [*FORGET, "--rewind_epoch", "3"]
BACKDOOR = [*D, "--num_indexes_to_replace", "50", "--mask", "{new}"]
OWN = ["--dataset", "imagefolder", "--data", "{nodata}", "--arch", "resnet20s"]

# (script, options, a fragment of the one error line)
CASES = [
    ("main_imp.py", [*D, "--rate", "1.5"], "--rate 1.5: the share of weights to prune must be in [0, 1)"),
    ("main_imp.py", [*D, "--epochs", "-1"], "--epochs -1: must be 0 or more"),
    ("main_imp.py", [*D, "--lr", "0"], "--lr 0.0: must be positive"),
    ("main_imp.py", [*D, "--batch_size", "0"], "--batch_size 0: must be at least 1"),
    ("main_imp.py", ["--dataset", "nosuch"], "argument --dataset: invalid choice: 'nosuch'"),
    ("main_imp.py", [*D, "--arch", "nosuch"], "argument --arch: invalid choice: 'nosuch'"),
    ("main_imp.py", [*D, "--batch_size", "abc"], "argument --batch_size: invalid int value: 'abc'"),
    ("main_imp.py", [*D, "--resume", "--checkpoint", "{missing}"], "--checkpoint {missing}: file not found"),
    ("main_imp.py", [*D, "--resume", "--checkpoint", "{r18}"], "is not a main_imp.py checkpoint"),
    ("main_imp.py", [*D, "--epochs", "3", "--pruning_times", "2", "--rewind_epoch", "20"], "the rewind point must be an epoch in 1..3"),
    ("main_imp.py", [*D, "--pruning_times", "0"], "--pruning_times 0: must be at least 1"),
    ("main_imp.py", [*D, "--decreasing_lr", "a,b"], "--decreasing_lr 'a,b': expected comma-separated epochs"),
    ("main_imp.py", [*D, "--dataset", "cifar10", "--data", "{nodata}"], "cifar10 not found in"),
    ("main_synflow.py", [*D, "--rate", "1"], "--rate 1.0: the share of weights to prune must be in [0, 1)"),
    ("main_synflow.py", [*D, "--synflow_rounds", "0"], "--synflow_rounds 0: must be at least 1"),
    ("main_forget.py", [*D, "--unlearn", "FT"], "--mask is required"),
    ("main_forget.py", [*D, "--mask", "{missing}", "--unlearn", "FT"], "--mask {missing}: file not found"),
    ("main_forget.py", [*D, "--mask", "{junk}", "--unlearn", "FT"], "not a PyTorch checkpoint, or damaged"),
    ("main_forget.py", [*D, "--mask", "{r18}", "--unlearn", "FT"], "the checkpoint does not fit this architecture"),
    ("main_forget.py", [*D, "--mask", "{r20}", "--unlearn", "nosuch"], "argument --unlearn: invalid choice: 'nosuch'"),
    ("main_forget.py", [*FORGET, "--num_indexes_to_replace", "5000"], "class 0 has 128 training images; ask for 1..128"),
    ("main_forget.py", [*FORGET, "--class_to_replace", "-1", "--num_indexes_to_replace", "2000"], "ask for 1..1298"),
    ("main_forget.py", [*FORGET, "--class_to_replace", "12"], "--class_to_replace 12: classes are 0..9"),
    ("main_forget.py", [*FORGET, "--indexes_to_replace", "5000000"], "--indexes_to_replace: positions must be in [0, 1297]"),
    ("main_forget.py", [*FORGET, "--indexes_to_replace", "3", "--class_to_replace", "1"], "--indexes_to_replace lists the forget set"),
    ("main_forget.py", [*FORGET, "--unlearn_lr", "0"], "--unlearn_lr 0.0: must be positive"),
    ("main_forget.py", [*FORGET, "--unlearn_epochs", "-1"], "--unlearn_epochs -1: must be 0 or more"),
    ("main_forget.py", [*D, "--mask", "{r20}", "--unlearn", "wfisher", "--alpha", "-1"], "--alpha -1: must be a finite number, 0 or more"),
    ("main_forget.py", [*D, "--mask", "{r20}", "--unlearn", "fisher_new", "--alpha", "nan"], "--alpha nan: must be a finite number"),
    ("main_forget.py", REWIND, "--rewind_epoch 3: FT would start from the weights in --rewind_pth"),
    ("main_forget.py", [*REWIND, "--rewind_pth", "{missing}"], "--rewind_pth {missing}: file not found"),
    ("main_forget.py", [*REWIND, "--rewind_pth", "{r18}"], "--rewind_pth {r18} (--arch resnet20s, --dataset digits)"),
    ("main_forget.py", [*PRUNE_BI, "--unlearn_epochs", "1"], "--unlearn FT_prune_bi prunes at the start"),
    ("main_forget.py", [*PRUNE_BI, "--rate", "1"], "--rate 1.0: the share of weights to prune"),
    ("main_forget.py", [*SALUN, "--mask_path", "{missing}"], "--mask_path {missing}: file not found"),
    ("main_forget.py", [*SALUN, "--mask_path", "{junk}"], "cannot read --mask_path saliency mask {junk}: not a PyTorch checkpoint"),
    ("main_forget.py", [*SALUN, "--mask_path", "{evil}"], "refusing to load {evil}"),
    ("main_forget.py", [*SALUN, "--mask_path", "{r18sd}"], "--mask_path {r18sd}: the saliency mask does not fit this model"),
    ("main_forget.py", [*SALUN, "--mask_path", "{r20}"], "--mask_path {r20}: not a saliency mask"),
    ("main_forget.py", [*SALUN, "--salun_ratio", "0"], "--salun_ratio 0.0: the share of weights SalUn may move must be in (0, 1]"),
    ("main_forget.py", [*D, "--mask", "{r20}", "--unlearn", "SCRUB", "--msteps", "-1"], "--msteps -1: must be 0 or more"),
    (
        "main_forget.py",
        [*D, "--mask", "{r20}", "--unlearn", "retrain_pipeline", "--pruning_times", "2", "--epochs", "3"],
        "--prune_type rewind_lt --rewind_epoch 0: the rewind point must be an epoch in 1..3",
    ),
    ("main_forget.py", [*D, "--mask", "{r20}", "--unlearn", "SCRUB", "--kd_T", "0"], "--kd_T 0: the temperature must be positive"),
    (
        "main_forget.py",
        [*D, "--mask", "{r20}", "--unlearn", "SCRUB", "--forget_batch_size", "0"],
        "--forget_batch_size 0: must be at least 1",
    ),
    (
        "main_forget.py",
        [*D, "--mask", "{capped}", "--unlearn", "FT"],
        "--mask {capped} was trained with --train_per_class 50 (this run: all)",
    ),
    ("main_imp.py", [*D, "--train_per_class", "0"], "--train_per_class 0: must be at least 1"),
    ("main_imp.py", [*OWN, "--image_size", "4"], "--image_size 4: must be at least 8 pixels"),
    ("main_imp.py", [*OWN, "--image_mean", "a,b"], "--image_mean 'a,b': give three comma-separated numbers"),
    ("main_imp.py", [*OWN, "--image_std", "0.2,0,0.2"], "--image_std '0.2,0,0.2': a standard deviation must be positive"),
    ("main_imp.py", [*OWN, "--num_workers", "-1"], "--num_workers -1: must be 0 (decode in the main process) or more"),
    ("main_backdoor.py", [*D, "--num_indexes_to_replace", "50"], "--mask is required"),
    ("main_backdoor.py", [*D, "--num_indexes_to_replace", "0", "--mask", "{new}"], "how many training images to poison (at least 1)"),
    ("main_backdoor.py", [*BACKDOOR, "--num_indexes_to_replace", "5000"], "the training split holds only 1298 images"),
    ("main_backdoor.py", [*BACKDOOR, "--class_to_replace", "10"], "--class_to_replace 10: the target label must be a class of digits"),
    ("main_backdoor.py", [*BACKDOOR, "--trigger_size", "40"], "--trigger_size 40: the trigger must fit"),
    ("main_backdoor.py", [*BACKDOOR, "--rate", "1.2"], "--rate 1.2: the share of weights to prune must be in [0, 1)"),
    ("main_backdoor.py", [*BACKDOOR, "--prune", "random"], "--prune random: choose one of omp, synflow"),
    ("main_backdoor.py", [*D, "--num_indexes_to_replace", "50", "--mask", "{r18}"], "the checkpoint does not fit this architecture"),
]
IDS = [f"{script[:-3]}:{' '.join(o for o in options if o not in D)}" for script, options, _ in CASES]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Run every case (two at a time); each gets a --save_dir that does not exist yet."""
    from models import create_model

    files = tmp_path_factory.mktemp("inputs")
    paths = {name: str(files / f"{name}.pth.tar") for name in ("r20", "r18", "junk", "missing", "new", "evil")}
    torch.save({"conv1.weight": torch.zeros(1), "extra": Payload(str(files / "payload_ran"))}, paths["evil"])
    paths["r18sd"] = str(files / "r18sd.pt")  # a bare state dict, shaped like a saliency mask of another model
    paths["nodata"] = str(files / "nodata")
    for name, arch in (("r20", "resnet20s"), ("r18", "resnet18")):
        torch.save({"state_dict": create_model(arch, 10, [0.5] * 3, [0.5] * 3).state_dict()}, paths[name])
    torch.save(create_model("resnet18", 10, [0.5] * 3, [0.5] * 3).state_dict(), paths["r18sd"])
    paths["capped"] = str(files / "capped.pth.tar")  # made by main_imp.py --train_per_class 50
    r20 = create_model("resnet20s", 10, [0.5] * 3, [0.5] * 3).state_dict()
    torch.save({"state_dict": r20, "args": {"dataset": "digits", "train_per_class": 50, "test_per_class": None}}, paths["capped"])
    with open(paths["junk"], "w") as f:
        f.write("not a checkpoint")

    server = ScriptServer()  # each case in a fork of a process that imported the scripts once
    results = []
    for i, (script, options, _) in enumerate(CASES):
        save_dir = files / f"out{i}"
        results.append((server.run(script, [*[o.format(**paths) for o in options], "--save_dir", save_dir]), save_dir))
    server.close()
    return results, paths


def test_a_case_run_by_the_server_is_as_the_script_run_alone(tmp_path):
    """The server's shortcut (no interpreter start) changes nothing a case sees."""
    script, options, _ = CASES[3]
    args = [*options, "--save_dir", tmp_path / "out"]
    server = ScriptServer()
    served = server.run(script, args)
    server.close()
    alone = run_script(script, *args)
    assert (served.returncode, served.stdout, served.stderr) == (alone.returncode, alone.stdout, alone.stderr)


@pytest.mark.parametrize("i", range(len(CASES)), ids=IDS)
def test_bad_input_gets_one_line_exit_2_and_writes_nothing(outcomes, i):
    results, paths = outcomes
    result, save_dir = results[i]
    expected = CASES[i][2].format(**paths)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not os.path.exists(save_dir)
    assert not os.path.exists(paths["new"])  # main_backdoor writes its trojaned model there only after the checks


def test_there_are_at_least_20_cases_across_the_four_scripts():
    assert len(CASES) >= 20
    assert {script for script, _, _ in CASES} == {"main_imp.py", "main_synflow.py", "main_forget.py", "main_backdoor.py"}


def test_the_readme_lists_every_case():
    with open(os.path.join(ROOT, "docs", "reliability.md")) as f:
        page = f.read()
    table = page[page.index("### Bad input") :]
    for script, _, expected in CASES:
        option, _, message = expected.partition(": ")  # e.g. "--rate 1.5", "the share of weights ..."
        for fragment in (option.split()[0], message or option):
            fragment = re.sub(r"\{\w+\}", "<path>", fragment)
            assert fragment in table, f"docs/reliability.md's bad-input table lacks {fragment!r} ({script})"
