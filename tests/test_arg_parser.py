"""A command that leans on a default runs the original's experiment."""

import json
import subprocess
import sys

import pytest

import arg_parser
from tests.conftest import ROOT

# Every option of the original's arg_parser.py (OPTML-Group/Unlearn-Sparse) with its default.
ORIGINAL_DEFAULTS = {
    "data": "../data",
    "dataset": "cifar10",
    "input_size": 32,
    "data_dir": "./tiny-imagenet-200",
    "num_workers": 4,
    "num_classes": 10,
    "arch": "resnet18",
    "imagenet_arch": False,
    "train_y_file": "./labels/train_ys.pth",
    "val_y_file": "./labels/val_ys.pth",
    "seed": 2,
    "gpu": 0,
    "workers": 4,
    "resume": False,
    "checkpoint": None,
    "save_dir": None,
    "mask": None,
    "batch_size": 256,
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "epochs": 182,
    "warmup": 0,
    "print_freq": 50,
    "decreasing_lr": "91,136",
    "no_aug": False,
    "no_l1_epochs": 0,
    "prune": "omp",
    "pruning_times": 1,
    "rate": 0.95,
    "prune_type": "rewind_lt",
    "random_prune": False,
    "rewind_epoch": 0,
    "rewind_pth": None,
    "unlearn": "retrain",
    "unlearn_lr": 0.01,
    "unlearn_epochs": 10,
    "num_indexes_to_replace": None,
    "class_to_replace": 0,
    "indexes_to_replace": None,
    "attack": "backdoor",
    "trigger_size": 4,
}
SCRIPTS = ("main_imp.py", "main_synflow.py", "main_forget.py", "main_backdoor.py")

# Each script run with no options, stopped right after it parsed them.
PARSED_BY_EACH_SCRIPT = """
import json, runpy, sys
import arg_parser
parse = arg_parser.parse_args
def report(argv=None):
    print(json.dumps(vars(parse(argv))))
    raise SystemExit(0)
arg_parser.parse_args = report
for script in sys.argv[1:]:
    sys.argv = [script]
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit:
        pass
"""


@pytest.fixture(scope="module")
def parsed():
    out = subprocess.run([sys.executable, "-c", PARSED_BY_EACH_SCRIPT, *SCRIPTS], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == len(SCRIPTS), out.stdout
    return dict(zip(SCRIPTS, lines))


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_option_of_the_original_keeps_its_default(parsed, script):
    args = parsed[script]
    differing = {k: (args.get(k, "missing"), v) for k, v in ORIGINAL_DEFAULTS.items() if args.get(k, "missing") != v}
    assert differing == {}
    # The documented departures: --train_seed left out is --seed (what the original's help
    # says it is), and --alpha left out is chosen per method (the original's 0.2 for retrain).
    assert args["train_seed"] == args["seed"] and args["alpha"] == 0.2


def test_train_seed_follows_seed_unless_given():
    assert arg_parser.parse_args(["--seed", "5"]).train_seed == 5
    assert arg_parser.parse_args(["--seed", "5", "--train_seed", "1"]).train_seed == 1


@pytest.mark.parametrize("method,alpha", [("FT", 0.2), ("retrain", 0.2), ("fisher", 0.2), ("wfisher", 3.0), ("FT_prune", 1e-3)])
def test_alpha_left_out_is_chosen_per_method_by_parse_args_itself(method, alpha):
    assert arg_parser.parse_args(["--unlearn", method]).alpha == alpha
    assert arg_parser.parse_args(["--unlearn", method, "--alpha", "0.5"]).alpha == 0.5


def test_an_explicit_forget_list_excludes_only_explicit_class_options():
    args = arg_parser.parse_args(["--indexes_to_replace", "3,4"])
    assert args.class_to_replace is None  # the default class does not apply to an explicit list
    for extra in (["--class_to_replace", "0"], ["--num_indexes_to_replace", "2"]):
        with pytest.raises(SystemExit):
            arg_parser.parse_args(["--indexes_to_replace", "3,4", *extra])


def test_help_lists_every_method():
    text = arg_parser.build_parser().format_help()
    import unlearn

    for name in unlearn.UNLEARN_METHODS:
        assert f"{name}:" in " ".join(text.split()), name
