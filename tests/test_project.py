"""The project's own promises: set-up files in step, no device-specific calls."""

import os
import re

from tests.conftest import ROOT


def package_names(lines):
    names = set()
    for line in lines:
        line = line.split("#")[0].strip()
        if line.startswith("- -e ") or line.startswith("-e "):  # the project itself
            continue
        line = line.lstrip("- ").strip()
        if line and not line.endswith(":") and not line.startswith(("python=", "pip")):
            names.add(re.split(r"[<>=!~ \[]", line)[0].lower())
    return names


def test_environment_yml_names_the_packages_of_requirements_txt():
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        requirements = package_names(f)
    with open(os.path.join(ROOT, "environment.yml")) as f:
        text = f.read()
    pip_section = text.split("- pip:")[1].splitlines()
    assert requirements == package_names(pip_section)
    assert {"torch", "torchvision", "numpy", "scikit-learn", "tqdm"} <= requirements


def test_ci_runs_the_readme_test_command():
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci = f.read()
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    assert re.search(r"^make test$", ci, re.M)
    assert "make test" in readme and "make demo" in readme


def python_files():
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("runs", "__pycache__")]
        for name in files:
            if name.endswith(".py"):
                yield os.path.join(folder, name)


def test_no_code_calls_cuda_directly():
    pattern = re.compile(r"\.cuda\(\)")
    offenders = []
    for path in python_files():
        with open(path) as f:
            for number, line in enumerate(f, 1):
                if pattern.search(line) and "pattern" not in line:
                    offenders.append(f"{os.path.relpath(path, ROOT)}:{number}")
    assert offenders == []


def test_every_torch_load_is_weights_only():
    offenders = []
    for path in python_files():
        with open(path) as f:
            for number, line in enumerate(f, 1):
                if "torch.load(" in line and "weights_only=True" not in line and "offenders" not in line:
                    offenders.append(f"{os.path.relpath(path, ROOT)}:{number}")
    assert offenders == []


def test_every_top_level_module_is_installed():
    """pyproject's py-modules lists every module at the root, so an installed copy imports them all."""
    import glob
    import os

    import tomllib
    from conftest import ROOT

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        listed = set(tomllib.load(f)["tool"]["setuptools"]["py-modules"])
    present = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "*.py"))}
    assert listed == present


def project_files():
    """{path: module name} of every module outside tests/, bench/ and scripts/."""
    import glob

    files = [p for p in glob.glob(os.path.join(ROOT, "**", "*.py"), recursive=True)
             if not os.path.relpath(p, ROOT).startswith(("tests", "bench", ".venv", "runs", "scripts"))]  # fmt: skip
    name_of = {}
    for path in files:
        parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
        name_of[path] = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    return name_of


def project_imports():
    """{module: {project modules it imports, at the top or inside a function}} for every module outside tests/ and bench/."""
    import ast

    name_of = project_files()
    modules = set(name_of.values())
    graph = {}
    for path, module in name_of.items():
        package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.Import):
                edges |= {alias.name for alias in node.names if alias.name in modules}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from .method import ..., from . import x
                    base = ".".join(filter(None, [package.rsplit(".", node.level - 1)[0] if node.level > 1 else package, base]))
                for alias in node.names:
                    target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    if target in modules and target != module:
                        edges.add(target)
        graph[module] = edges
    return graph


def test_no_module_imports_itself_round_a_circle():
    """The house has no import circles (docs/code_layout.md): lazy imports inside functions count too."""
    graph = project_imports()
    assert {"dataset", "dataset.tensors", "dataset.folders", "errors", "distributed", "unlearn", "unlearn.retrain_pipeline"} <= set(graph)
    assert graph["errors"] == set()  # the leaf every layer reports bad input through
    state, circles = {}, []

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                circles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []


def name_comparisons(source, names):
    """The lines of `source` that compare something with one of `names` (== "imagenet", in ("digits", ...))."""
    import ast

    def named(node):
        if isinstance(node, ast.Constant):
            return node.value in names
        return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and any(named(e) for e in node.elts)

    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Compare) and any(map(named, [node.left, *node.comparators]))
    ]


def test_no_module_outside_the_dataset_package_tests_a_datasets_name():
    """What differs between datasets is in their records (streamed, trigger, attack cap, image side)."""
    from dataset import DATASETS

    assert name_comparisons('if args.dataset == "imagenet" or name in ("digits", "x"): pass', set(DATASETS)) == [1, 1]  # it finds both
    found = {}
    for path, module in project_files().items():
        if module != "dataset" and not module.startswith("dataset."):
            lines = name_comparisons(open(path).read(), set(DATASETS))
            if lines:
                found[module] = lines
    assert found == {}


def test_no_module_outside_the_unlearn_package_tests_a_methods_name():
    """What differs between methods is in their records (roles, kinds, hooks): workflow/ reads them."""
    from unlearn import METHODS

    found = {}
    for path, module in project_files().items():
        if module != "unlearn" and not module.startswith("unlearn."):
            lines = name_comparisons(open(path).read(), set(METHODS))
            if lines:
                found[module] = lines
    assert found == {}
