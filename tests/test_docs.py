"""Every command in README.md and docs/*.md means something the project does.

Each command line of a fenced code block is checked: an entry script's options parse with
arg_parser (placeholders such as ${save_dir} filled in), a workflow or bench script exists
and lists each option it is given in its --help, `make` names a Makefile target, and a
file that `bash` runs or a grid a command names exists. Nothing in the docs points to a
document outside the repository.
"""

import functools
import glob
import os
import re
import shlex
import subprocess
import sys

import pytest

import arg_parser
from tests.conftest import ROOT

PAGES = [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]
ENTRY_SCRIPTS = ("main_imp.py", "main_synflow.py", "main_forget.py", "main_backdoor.py")
# What a placeholder stands for, by the option it fills (anything else: a number, which every option takes).
PLACEHOLDER_VALUES = {"--dataset": "cifar10", "--arch": "resnet18", "--unlearn": "FT", "--data": "./data"}


def code_blocks(text):
    return re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M)


def commands(page):
    """(page, line) for every command line in the page's code blocks, continuation lines joined."""
    with open(page) as f:
        blocks = code_blocks(f.read())
    found = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] in ("python", "make", "bash", "torchrun"):
                found.append((os.path.relpath(page, ROOT), words))
    return found


ALL = [c for page in PAGES for c in commands(page)]


def test_the_pages_hold_the_commands_a_user_copies():
    scripts = {w[2] if w[1] == "-u" else w[1] for _, w in ALL if w[0] == "python"}
    assert set(ENTRY_SCRIPTS) <= scripts and "scripts/sweep.py" in scripts and "scripts/summarize.py" in scripts
    assert {"demo", "test"} <= {w[1] for _, w in ALL if w[0] == "make"}


def filled(words):
    out = []
    for i, word in enumerate(words):
        out.append(PLACEHOLDER_VALUES.get(words[i - 1], "1") if "$" in word else word)
    return out


@functools.cache
def help_text(script):
    result = subprocess.run([sys.executable, os.path.join(ROOT, script), "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, f"{script} --help: {result.stderr}"
    return result.stdout


@functools.cache
def torchrun_help():
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--help"], capture_output=True, text=True, timeout=120)
    return result.stdout


@functools.cache
def make_targets():
    with open(os.path.join(ROOT, "Makefile")) as f:
        return set(re.findall(r"^([a-z][a-z-]*):", f.read(), flags=re.M))


@pytest.mark.parametrize("page,words", ALL, ids=[f"{p}:{' '.join(w)[:60]}" for p, w in ALL])
def test_every_command_on_every_page_runs_as_written(page, words):
    if words[0] == "make":
        assert words[1] in make_targets(), f"{page}: make {words[1]}: no such target"
        return
    if words[0] == "bash":
        assert os.path.isfile(os.path.join(ROOT, words[1])), f"{page}: {words[1]} not found"
        return
    if words[0] == "torchrun":  # torchrun's own options, then a script with its options
        at = next(i for i, word in enumerate(words) if word.endswith(".py"))
        for word in words[1:at]:
            if word.startswith("--"):
                assert word.split("=")[0] in torchrun_help(), f"{page}: torchrun has no option {word}"
        words = ["python", *words[at:]]
    args = words[2:] if words[1] == "-u" else words[1:]
    script, options = args[0], args[1:]
    assert os.path.isfile(os.path.join(ROOT, script)), f"{page}: {script} not found"
    if script in ENTRY_SCRIPTS:
        arg_parser.parse_args(filled(options))  # exits (fails the test) on an unknown option or a bad value
        return
    text = help_text(script)
    for previous, word in zip(["", *options], options):
        if previous == "--sbatch":  # the value is sbatch's own options
            continue
        if word.startswith("--"):
            assert word.split("=")[0] in text, f"{page}: {script} has no option {word}"
        elif word.startswith("scripts/grids/"):
            assert os.path.isfile(os.path.join(ROOT, word)), f"{page}: {word} not found"


def test_no_page_or_module_points_to_a_document_outside_the_repository():
    offenders = []
    for path in PAGES + glob.glob(os.path.join(ROOT, "**", "*.py"), recursive=True):
        if os.sep + ".venv" in path or path == __file__:
            continue
        with open(path) as f:
            if re.search(r"SPEC\.md|SPEC section|\.\./shared", f.read()):
                offenders.append(os.path.relpath(path, ROOT))
    assert offenders == [], offenders


def test_every_file_the_pages_name_exists():
    pattern = re.compile(r"`((?:tests|scripts|bench|unlearn|evaluation|workflow|models|docs|results)/[\w./-]+\.(?:py|json|sh|md|png))`")
    missing = []
    for page in PAGES:
        with open(page) as f:
            for name in pattern.findall(f.read()):
                if "<" not in name and not os.path.exists(os.path.join(ROOT, name)):
                    missing.append(f"{os.path.relpath(page, ROOT)}: {name}")
    assert missing == [], missing


def test_every_registered_method_is_described_in_words():
    """The registry's table is generated; what each method does, in a paragraph, is written by hand for each."""
    import unlearn

    with open(os.path.join(ROOT, "docs", "methods.md")) as f:
        page = f.read()
    prose = page[page.index("### What each does") :]
    for name in unlearn.METHODS:
        assert f"| `{name}` |" in prose, f"docs/methods.md's 'What each does' lacks {name}"


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "scripts", "slurm", "*.sbatch"))), ids=os.path.basename)
def test_the_slurm_examples_run_torchrun_from_the_submit_folder_with_valid_options(path, tmp_path):
    """Each example run by bash with fake srun and scontrol (which print what they were given), as Slurm would run it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text('#!/bin/bash\necho "cwd=$PWD cpus=$SRUN_CPUS_PER_TASK"\nprintf "%s\\n" "$@"\n')
    # A long node list: a script that stops reading after the first line would fail here on SIGPIPE every time.
    (bin_dir / "scontrol").write_text("#!/bin/bash\necho node-a; for i in $(seq 20000); do echo node-b$i; done\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    slurm = {"SLURM_SUBMIT_DIR": ROOT, "SLURM_CPUS_PER_TASK": "64", "SLURM_JOB_NODELIST": "node-[a-b]", "SLURM_NNODES": "2"}
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_ID="123456", **slurm)
    env.pop("UNLEARN_PYTHON", None)
    given = ["/data/imagenet", "runs/x/1model_SA_best.pth.tar", "runs/y"]
    ran = subprocess.run(["bash", path, *given], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr
    first, *words = ran.stdout.splitlines()
    assert first == f"cwd={ROOT} cpus=64"
    assert words[:3] == [".venv/bin/python", "-m", "torch.distributed.run"]
    at = next(i for i, word in enumerate(words) if word.endswith(".py"))
    assert all(w.split("=")[0] in torchrun_help() for w in words[3:at] if w.startswith("--"))
    if "--rdzv_endpoint" in words:
        assert words[words.index("--rdzv_endpoint") + 1] == f"node-a:{29500 + 123456 % 20000}"
    assert words[at] in ENTRY_SCRIPTS
    arg_parser.parse_args(filled(words[at + 1 :]))
    assert words[words.index("--data") + 1] == "/data/imagenet" and words[words.index("--save_dir") + 1] in given[1:]
    missing = subprocess.run(["bash", path], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert missing.returncode != 0 and "usage: sbatch" in missing.stderr


def test_the_generated_tables_of_options_methods_and_datasets_are_current():
    from workflow import docs_tables

    assert docs_tables.stale_pages() == {}, "run python scripts/docs_tables.py"


def test_a_default_changed_in_the_code_makes_its_page_stale():
    from workflow import docs_tables

    parser = arg_parser.build_parser()
    next(a for a in parser._actions if a.dest == "lr").default = 0.2
    tables = {"options": ("docs/commands.md", docs_tables.options_table(parser))}
    assert docs_tables.stale_pages(tables=tables) == {"docs/commands.md": ["options"]}
