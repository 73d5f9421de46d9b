"""Run a grid of the pipeline: masks first, then every unlearning run, locally or on Slurm.

    python scripts/sweep.py GRID --out RUN_DIR [--backend local|slurm] [--jobs N] [--dry-run]

GRID is a JSON file (format in docs/sweeps.md, examples in scripts/grids/). It expands into
  mask tasks      one main_imp.py / main_synflow.py run per entry of "masks", in
                  RUN_DIR/masks/<mask>/
  unlearn tasks   one main_forget.py run per model x scenario x
                  method x seed, in RUN_DIR/unlearn/<model>/<scenario>/<method>/seed<s>/;
                  a method option given as a list ("alpha": [1e-8, 1e-7]) makes one
                  task per value (per combination), in .../<method>/<setting>/seed<s>/
  calibrations    a method with "_calibrate" (docs/sweeps.md) first calibrates its option
                  per model x scenario (x setting) on a seed of its own, in
                  .../<method>/[<setting>/]calibration/seed<s>/, to a number or to the
                  mean of another method's results there (e.g. Retrain's); its seeds
                  then run with --calibrated_from that result
and every task waits for those it needs: its mask task, a calibration for its target's
tasks, a calibrated run for its calibration. Every task passes
--resume, and a task whose result file exists is not started again: running the same
sweep twice redoes only what is unfinished. RUN_DIR/sweep.json lists every task with its
command and result file (scripts/summarize.py reads it to name missing results), and each
unlearning task's folder holds task.json, its name and labels (model, scenario, method,
seed, setting), so that its results can be summarised wherever they are copied.

local   runs the tasks with --jobs workers; each worker gets its own CUDA_VISIBLE_DEVICES
        (round robin over --gpus, default every visible GPU) and an equal share of the CPU
        threads (OMP_NUM_THREADS; a lone mask task gets them all), so that workers do not
        slow each other down.
slurm   writes RUN_DIR/slurm/<stage>.sbatch and submits a job array for each stage (masks,
        unlearn, calibration, calibrated), each with --dependency=afterok on the earlier ones; --sbatch passes
        options to both (e.g. --sbatch="--partition gpu --gres gpu:1 --time 24:00:00").
--dry-run prints the commands (and the sbatch scripts) without running anything.
"""

import argparse
import itertools
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import calibration
import distributed
import paths
from checkpoints import atomic_save_json
from errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where the entry scripts are
MASK_SCRIPTS = ("main_imp.py", "main_synflow.py")
STAGES = ("masks", "unlearn", "calibration", "calibrated")  # a task of a stage waits only for tasks of earlier ones


# ---------------------------------------------------------------- the grid


def options_list(options):
    """{"unlearn_lr": 0.01, "resume": true} -> ["--unlearn_lr", "0.01", "--resume"] (keys in order)."""
    out = []
    for key, value in options.items():
        if key.startswith("_") or value is None or value is False:
            continue
        flag = key if key.startswith("-") else f"--{key}"
        out += [flag] if value is True else [flag, str(value)]
    return out


def load_grid(path):
    try:
        with open(path) as f:
            grid = json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: grid file not found (shipped grids are in scripts/grids/)") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None
    for key in ("masks", "models", "methods"):
        if not grid.get(key):
            raise UserError(f"{path}: the grid needs a non-empty {key!r} entry (see the grid format in docs/sweeps.md)")
    for name, mask in grid["masks"].items():
        if mask.get("script", "main_imp.py") not in MASK_SCRIPTS:
            raise UserError(f"{path}: masks.{name}.script must be main_imp.py or main_synflow.py")
    for name, model in grid["models"].items():
        if model.get("mask") not in grid["masks"]:
            raise UserError(f"{path}: models.{name}.mask must name one of masks ({', '.join(grid['masks'])})")
    for key in ("processes_per_task", "nodes_per_task"):
        value = grid.get(key, 1)
        if type(value) is not int or value < 1:
            raise UserError(f"{path}: {key} must be a whole number, 1 or more (got {value!r})")
    train_seeds = grid.get("train_seeds")
    if train_seeds is not None and not (isinstance(train_seeds, list) and train_seeds and all(type(k) is int for k in train_seeds)):
        raise UserError(f"{path}: train_seeds must be a non-empty list of integers, e.g. [1, 2, 3]")
    for method, options in grid["methods"].items():
        for key, names in (("_models", grid["models"]), ("_scenarios", grid.get("scenarios", {"class-wise": {}}))):
            unknown = [n for n in options.get(key, []) if n not in names]
            if unknown:
                raise UserError(f"{path}: methods.{method}.{key} names {unknown}, not among the grid's ({', '.join(names)})")
    for method, options in grid["methods"].items():
        if "_calibrate" in options:
            check_calibration(path, grid, method, options)
    for i, override in enumerate(grid.get("overrides", [])):
        for key, names in (("model", grid["models"]), ("scenario", grid.get("scenarios", {"class-wise": {}})), ("method", grid["methods"])):
            if key in override and override[key] not in names:
                raise UserError(f"{path}: overrides[{i}].{key} {override[key]!r} is not one of the grid's {key}s ({', '.join(names)})")
    return grid


CALIBRATION_KEYS = {"option", "range", "target", "seed", "metric", "tolerance", "steps", "curve"}


def check_calibration(path, grid, method, options):
    """A method's "_calibrate": {"option", "range", "target", "seed"[, "metric", "tolerance", "steps", "curve"]}."""
    where = f"{path}: methods.{method}._calibrate"
    spec = options["_calibrate"]
    if not isinstance(spec, dict):
        raise UserError(f'{where} must be an object, e.g. {{"option": "unlearn_lr", "range": "1e-4,1e-1", "target": "retrain", "seed": 9}}')
    unknown = sorted(set(spec) - CALIBRATION_KEYS)
    if unknown:
        raise UserError(f"{where}: unknown keys {unknown} (it takes {', '.join(sorted(CALIBRATION_KEYS))})")
    missing = sorted({"option", "range", "target", "seed"} - set(spec))
    if missing:
        raise UserError(f"{where}: needs {missing}")
    if spec["option"] not in calibration.OPTIONS:
        raise UserError(f"{where}.option {spec['option']!r}: one of {', '.join(calibration.OPTIONS)}")
    if spec["option"] in varied_keys(options):
        raise UserError(f"{where}: {spec['option']} is calibrated, so it cannot also be a list of settings")
    try:
        calibration.parse_range(calibration_range(spec))
    except UserError as err:
        raise UserError(f"{where}.range: {err}") from None
    target = spec["target"]
    if isinstance(target, str):
        if target not in grid["methods"] or target == method:
            raise UserError(f"{where}.target {target!r}: a number, or another method of the grid whose results set it")
        if "_calibrate" in grid["methods"][target]:
            raise UserError(f"{where}.target {target!r}: that method is calibrated itself; a target is a method run at fixed settings")
    elif not (isinstance(target, (int, float)) and not isinstance(target, bool) and 0 <= target <= 100):
        raise UserError(f"{where}.target {target!r}: a percentage from 0 to 100, or the name of a method of the grid")
    if type(spec["seed"]) is not int:
        raise UserError(f"{where}.seed {spec['seed']!r}: a whole number, the unlearning seed the value is chosen on")
    if spec["seed"] in options.get("_seeds", grid.get("seeds", [1])):
        raise UserError(f"{where}.seed {spec['seed']}: also a measured seed; choose on a seed of its own (independent measurements)")


def calibration_range(spec):
    value = spec["range"]
    return ",".join(str(v) for v in value) if isinstance(value, list) else str(value)


def calibration_options(spec, target_files):
    """main_forget.py's calibration options for a grid's "_calibrate" and its target's result files."""
    target = ",".join(target_files) if isinstance(spec["target"], str) else str(spec["target"])
    options = {"calibrate": spec["option"], "calibrate_target": target, "calibrate_range": calibration_range(spec)}
    for key in ("metric", "tolerance", "steps"):
        if key in spec:
            options[f"calibrate_{key}"] = spec[key]
    return {**options, "calibrate_curve": bool(spec.get("curve"))}


def after(task):
    """The names of the tasks `task` waits for ("after": a name, a list of names, or None)."""
    waits = task.get("after")
    return [] if not waits else [waits] if isinstance(waits, str) else list(waits)


def expand(grid, out):
    """The grid's tasks: (mask tasks, unlearn tasks), each {"name", "cmd", "result", "after", "stage"}.

    The unlearn tasks come by original model (train seed), each in the order of the stages
    (unlearn, calibration, calibrated): a task only waits for tasks before it.

    "train_seeds": [1, 2, ...] makes one original model per mask and train seed (its own
    dense training and pruning, --train_seed k, in masks/<mask>/train_seed<k>/), and every
    unlearning task runs from each (in unlearn/<model>/train_seed<k>/..., labelled with it).
    """
    python = sys.executable
    common = grid.get("common", {})
    train_seeds = grid.get("train_seeds") or [None]  # None: one original model per mask, as before
    mask_tasks, mask_dirs = [], {}
    launch = {"processes": grid.get("processes_per_task", 1), "nodes": grid.get("nodes_per_task", 1)}
    for name, mask in grid["masks"].items():
        script = mask.get("script", "main_imp.py")
        for train_seed in train_seeds:
            save_dir = paths.sweep_mask_dir(out, name, train_seed)
            mask_dirs[name, train_seed] = save_dir
            options = {**common, **mask.get("options", {}), **train_seed_option(train_seed)}
            states = int(options.get("pruning_times", 1)) if script == "main_imp.py" else 1
            cmd = [python, os.path.join(ROOT, script), *options_list(options), "--save_dir", save_dir, "--resume"]
            # Done when the last state's best model and the summary exist.
            result = paths.best_checkpoint_path(save_dir, states - 1)
            task_name = mask_task_name(name, train_seed)
            mask_tasks.append(
                {
                    "name": task_name,
                    "cmd": cmd,
                    "result": result,
                    "also": paths.imp_summary_path(save_dir),
                    "after": [],
                    "stage": "masks",
                    **launch,
                }  # fmt: skip
            )
    scenarios = grid.get("scenarios", {"class-wise": {}})
    fixed, calibrations, calibrated = [], [], []
    of_place = {}  # (model, train seed, scenario, method) -> its fixed-setting tasks (a calibration's target)
    for model_name, model in grid["models"].items():
        for train_seed in train_seeds:
            mask_file = os.path.join(mask_dirs[model["mask"], train_seed], model["file"])
            for scenario, scenario_options in scenarios.items():
                for method, method_options in grid["methods"].items():
                    if not applies(method_options, model_name, scenario):
                        continue
                    chosen = overridden(grid, model_name, scenario, method, method_options)
                    for setting, options_of_setting in settings(chosen):
                        place = {"out": out, "model": model_name, "train_seed": train_seed, "scenario": scenario, "method": method,
                                 "setting": setting, "varied": varied_values(chosen, options_of_setting), "mask_file": mask_file,
                                 "mask_task": mask_task_name(model["mask"], train_seed), "launch": launch,
                                 "options": {**common, **scenario_options, **options_of_setting}}  # fmt: skip
                        seeds = method_options.get("_seeds", grid.get("seeds", [1]))
                        if "_calibrate" not in method_options:
                            tasks = [unlearn_task(place, seed) for seed in seeds]
                            of_place.setdefault((model_name, train_seed, scenario, method), []).extend(tasks)
                            fixed += tasks
                            continue
                        spec = method_options["_calibrate"]
                        place["options"].pop(spec["option"], None)  # the calibration sets it
                        target_tasks = of_place_of_target(of_place, place, spec) if isinstance(spec["target"], str) else []
                        calibrating = unlearn_task(
                            place, spec["seed"], calibration_options(spec, [t["result"] for t in target_tasks]),
                            after=[t["name"] for t in target_tasks], role="calibration",
                        )  # fmt: skip
                        calibrations.append(calibrating)
                        reuse = {"calibrated_from": calibrating["result"]}
                        calibrated += [unlearn_task(place, seed, reuse, after=[calibrating["name"]]) for seed in seeds]
    # One original model after another (its fixed-setting runs, calibrations, measured runs), so that
    # a sweep cut short leaves whole original models; a task still waits only for tasks before it.
    tasks = fixed + calibrations + calibrated
    tasks.sort(key=lambda t: (train_seeds.index(t["labels"].get("train_seed")), STAGES.index(t["stage"])))
    return mask_tasks, tasks


def of_place_of_target(of_place, place, spec):
    """The target method's tasks on the same original model and scenario (all their seeds)."""
    key = (place["model"], place["train_seed"], place["scenario"], spec["target"])
    if key not in of_place:  # the grid's order: a method's target must come before it
        raise UserError(
            f"methods.{place['method']}._calibrate.target {spec['target']!r}: it has no runs on {place['model']} "
            f"({place['scenario']}) before {place['method']} in the grid; list it earlier and for every model and scenario "
            f"{place['method']} runs on"
        )
    return of_place[key]


def unlearn_task(place, seed, extra=None, after=(), role=None):
    """One main_forget.py task of a place (model, train seed, scenario, method, setting) and seed.

    role "calibration": the run that chooses the value, in .../calibration/seed<s>/;
    `extra` holds its --calibrate options, or a measured run's --calibrated_from.
    """
    train_seed, method, setting = place["train_seed"], place["method"], place["setting"]
    save_dir = paths.sweep_unlearn_dir(place["out"], place["model"], place["scenario"], method, seed, setting, train_seed)
    if role == "calibration":
        save_dir = paths.sweep_calibration_dir(save_dir, seed)
    options = {**place["options"], "seed": seed, **train_seed_option(train_seed), **(extra or {})}
    cmd = [sys.executable, os.path.join(ROOT, "main_forget.py"), *options_list(options), "--mask", place["mask_file"]]
    cmd += ["--unlearn", method, "--save_dir", save_dir, "--resume"]
    labels = {"model": place["model"], "scenario": place["scenario"], "method": method, "seed": seed}
    if train_seed is not None:
        labels["train_seed"] = train_seed
    if setting:
        labels.update(setting=setting, options=place["varied"])
    if role:
        labels["role"] = role
    of_model = f" (train seed {train_seed})" if train_seed is not None else ""
    what = f"{'calibrate ' if role else ''}{method}{f' ({setting})' if setting else ''}"
    return {
        "name": f"{what} {place['model']}{of_model} {place['scenario']} seed {seed}",
        "cmd": cmd,
        "result": paths.eval_json_path(save_dir, method),
        "after": [place["mask_task"], *after],
        "stage": "calibration" if role else "calibrated" if extra else "unlearn",
        **place["launch"],
        "labels": labels,
    }


def train_seed_option(train_seed):
    """An original model's --train_seed: its initialisation and data order, and Retrain's initialisation."""
    return {} if train_seed is None else {"train_seed": train_seed}


def mask_task_name(mask, train_seed):
    return f"mask {mask}" + ("" if train_seed is None else f" train seed {train_seed}")


def applies(method_options, model, scenario):
    """A method's "_models" / "_scenarios" (lists) limit it to those models / scenarios (left out: all);
    its "_seeds" replace the grid's "seeds" for it (expand reads them)."""
    return model in method_options.get("_models", [model]) and scenario in method_options.get("_scenarios", [scenario])


def overridden(grid, model, scenario, method, options):
    """The method's options with the grid's "overrides" that match this model, scenario and method applied.

    An override is {"model": ..., "scenario": ..., "method": ..., "options": {...}}, each of
    the three optional (left out: any): e.g. an alpha chosen for the sparse model alone.
    """
    for override in grid.get("overrides", []):
        wanted = {"model": model, "scenario": scenario, "method": method}
        if all(override.get(key, value) == value for key, value in wanted.items()):
            options = {**options, **override.get("options", {})}
    return options


def varied_keys(options):
    """The options given as lists (one task per value), keys starting with "_" aside."""
    return [key for key, value in options.items() if isinstance(value, list) and not key.startswith("_")]


def varied_values(options, chosen):
    """{option: the value this setting takes} for the options `options` varies."""
    return {key: chosen[key] for key in varied_keys(options)}


def settings(options):
    """[(label, options)]: one per combination of the list-valued options ("" and the options when none is a list).

    {"alpha": [1e-8, 1e-7], "unlearn_epochs": 5} -> [("alpha=1e-08", {"alpha": 1e-8, ...}), ("alpha=1e-07", ...)]
    """
    varied = varied_keys(options)
    if not varied:
        return [("", options)]
    combos = []
    for values in itertools.product(*(options[key] for key in varied)):
        chosen = dict(zip(varied, values))
        combos.append((", ".join(f"{key}={value}" for key, value in chosen.items()), {**options, **chosen}))
    return combos


def write_task_labels(task):
    """`task.json` beside an unlearning task's results: its name and labels (the setting among them)."""
    atomic_save_json({"name": task["name"], "labels": task["labels"]}, os.path.join(os.path.dirname(task["result"]), paths.TASK_FILE))


def finished(task):
    return os.path.isfile(task["result"]) and ("also" not in task or os.path.isfile(task["also"]))


# Where and how a run went, not what it computed: a change of these is no change of the task.
# Paths among them: a run folder that was moved or copied (results/) keeps its results.
NOT_COMPARED = {"save_dir", "resume", "checkpoint", "gpu"} | {
    "mask", "rewind_pth", "mask_path", "data", "data_dir", "train_positions", "indexes_to_replace",
    "calibrate_target", "calibrated_from",
}  # fmt: skip
SHOWN_CHANGES = 10


def changed_options(task):
    """[(option, value the finished run used, value the grid gives now)] for the options the
    task's command sets; [] when they agree or the run's arguments cannot be read."""
    import arg_parser  # here: it loads torch, which a sweep with nothing finished never needs

    try:
        with open(task.get("also") or task["result"]) as f:  # a mask's imp_summary.json, an unlearning's eval JSON
            saved = json.load(f)["args"]
        argv = task["cmd"][2:]  # after the interpreter and the script
        now = vars(arg_parser.parse_args(argv))
        given = arg_parser.given_options(argv)
    except (OSError, ValueError, KeyError, TypeError, SystemExit):
        return []
    return [(k, saved[k], now[k]) for k in sorted(given - NOT_COMPARED) if k in saved and saved[k] != now[k]]


def warn_about_changed_tasks(tasks):
    """One line per finished task that ran with other options than the grid now gives: its
    results are kept (a sweep never deletes), so say how to run it again."""
    changed = []
    for task in tasks:
        changes = changed_options(task) if finished(task) else []
        if changes:
            changed.append((task, changes))
    for task, changes in changed[:SHOWN_CHANGES]:
        what = ", ".join(f"--{k} {old!r} (grid now: {new!r})" for k, old, new in changes)
        folder = os.path.dirname(task["result"])
        also = " and the unlearning results made from it" if "also" in task else ""
        print(f"# warning: {task['name']}: finished with {what}; kept. Delete {folder}{also} to run it with the grid's options")
    if len(changed) > SHOWN_CHANGES:
        print(f"# warning: and {len(changed) - SHOWN_CHANGES} more finished tasks that ran with other options than the grid's")


def command_line(task):
    return shlex.join(task["cmd"])


def torchrun_prefix(processes, nodes=1, slurm=False):
    """The launcher of a task of several processes (distributed.py): torchrun, on one node or, on Slurm, across several."""
    run = [sys.executable, "-m", "torch.distributed.run"]
    if not slurm:
        return [*run, "--standalone", f"--nproc_per_node={processes}"]
    # One srun task per node starts torchrun there; they meet at the job's first node, on a port of the job's own.
    # Slurm 22.05 and later do not pass the job's --cpus-per-task on to srun by themselves.
    endpoint = '"$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1):$((29500 + SLURM_JOB_ID % 20000))"'
    fixed = shlex.join([*run, f"--nnodes={nodes}", f"--nproc_per_node={processes}", "--rdzv_backend=c10d"])
    cpus = "${SLURM_CPUS_PER_TASK:+--cpus-per-task=$SLURM_CPUS_PER_TASK}"
    return f'srun {cpus} {fixed} --rdzv_id="$SLURM_JOB_ID" --rdzv_endpoint={endpoint}'


def launch_command(task, slurm=False):
    """The task's command as a backend runs it: as it is, or under torchrun when the grid asks for several processes."""
    if task.get("processes", 1) == 1 and task.get("nodes", 1) == 1:
        return command_line(task) if slurm else task["cmd"]
    program = task["cmd"][1:]  # the entry script and its options, without the interpreter
    if slurm:
        return torchrun_prefix(task["processes"], task["nodes"], slurm=True) + " " + shlex.join(program)
    return [*torchrun_prefix(task["processes"]), *program]


# ---------------------------------------------------------------- local backend


class LocalRunner:
    """Runs tasks with `jobs` workers; a task starts once the task it waits for succeeded."""

    def __init__(self, jobs, gpus, log_dir):
        self.jobs, self.gpus, self.log_dir = jobs, gpus, log_dir
        self.slots = list(range(jobs))
        self.lock = threading.Lock()
        self.procs = set()
        self.stopping = False

    def run_all(self, mask_tasks, unlearn_tasks):
        """Run the tasks; a task waits for those it names in "after" (earlier in the lists: the
        queue's order, so that waiting tasks never hold every worker while what they wait for queues)."""
        done = {t["name"]: threading.Event() for t in mask_tasks + unlearn_tasks}
        ok = {}
        results = {}

        def run(task):
            for name in after(task):
                done[name].wait()
                if not ok.get(name):
                    results[task["name"]] = f"skipped ({name} failed)"
                    ok[task["name"]] = False
                    done[task["name"]].set()
                    return
            rc = self.run_one(task)
            results[task["name"]] = "ok" if rc == 0 else f"failed (exit {rc}; log {self.log_path(task)})"
            ok[task["name"]] = rc == 0
            done[task["name"]].set()

        # Threads per task: the cores shared by the tasks of its stage that can run side by side
        # (a lone mask task gets every core).
        for stage in (mask_tasks, unlearn_tasks):
            for task in stage:
                side_by_side = max(1, min(self.jobs, len(stage))) * task.get("processes", 1)
                task["threads"] = max(1, (os.cpu_count() or 1) // side_by_side)
        # Mask tasks first in the queue, so that their dependants never hold every worker.
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            list(pool.map(run, mask_tasks + unlearn_tasks))
        return results

    def log_path(self, task):
        return os.path.join(self.log_dir, paths.slug(task["name"]) + ".log")

    def run_one(self, task):
        with self.lock:
            if self.stopping:
                return -1
            slot = self.slots.pop(0)
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(task.get("threads", 1)))
        if self.gpus:  # a task of P processes gets P GPUs of its own
            per_task = task.get("processes", 1)
            first = (slot * per_task) % len(self.gpus)
            env["CUDA_VISIBLE_DEVICES"] = ",".join(self.gpus[(first + i) % len(self.gpus)] for i in range(per_task))
        start = time.time()
        self.say(f"[start] {task['name']}")
        try:
            with open(self.log_path(task), "w") as log:
                shown = {k: env[k] for k in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS") if k in env}
                log.write(f"$ {' '.join(f'{k}={v}' for k, v in shown.items())} {command_line(task)}\n")
                log.flush()
                proc = subprocess.Popen(launch_command(task), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
                with self.lock:
                    self.procs.add(proc)
                rc = proc.wait()
                with self.lock:
                    self.procs.discard(proc)
        finally:
            with self.lock:
                self.slots.append(slot)
        self.say(f"[{'done' if rc == 0 else 'FAILED'}] {task['name']} ({time.time() - start:.0f} s)")
        return rc

    def say(self, line):
        """One whole line on stdout: print from two workers at once can interleave text and newline."""
        with self.lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def stop(self, *_):
        """SIGTERM/SIGINT: stop the running tasks (they keep their checkpoints) and start no more."""
        with self.lock:
            self.stopping = True
            for proc in self.procs:
                proc.terminate()


def visible_gpus():
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return [g for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


# ---------------------------------------------------------------- slurm backend


def sbatch_script(name, tasks_file, n, log_dir, extra, nodes=1):
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={name}",
        f"#SBATCH --array=0-{n - 1}",
        f"#SBATCH --output={os.path.join(log_dir, name.split('-')[-1] + '_%a.log')}",
        *([f"#SBATCH --nodes={nodes}", "#SBATCH --ntasks-per-node=1"] if nodes > 1 else []),
        *(f"#SBATCH {option}" for option in extra),
        "# One task per line of the tasks file; each passes --resume, so a re-queued task continues.",
        f'cmd=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {shlex.quote(tasks_file)})',
        'echo "$ $cmd"',
        f"cd {shlex.quote(ROOT)}",
        'eval "exec $cmd"',
    ]
    return "\n".join(lines) + "\n"


def sbatch_options(text):
    """--sbatch "--partition gpu --gres gpu:1" -> ["--partition gpu", "--gres gpu:1"] (one per line)."""
    options, current = [], []
    for word in shlex.split(text or ""):
        if word.startswith("-") and current:
            options.append(shlex.join(current))
            current = []
        current.append(word)
    if current:
        options.append(shlex.join(current))
    return options


def submit_slurm(mask_tasks, unlearn_tasks, out, extra, dry_run):
    """One job array per stage, each with --dependency=afterok on the arrays submitted before it."""
    folder = paths.sweep_slurm_dir(out)
    log_dir = os.path.join(folder, "logs")
    if not dry_run:
        os.makedirs(log_dir, exist_ok=True)
    job_ids = {}
    tasks_of = {stage: [t for t in mask_tasks + unlearn_tasks if t.get("stage", "unlearn") == stage] for stage in STAGES}
    for stage, tasks in tasks_of.items():
        if not tasks:
            if stage in ("masks", "unlearn"):
                print(f"# {stage}: nothing left to run")
            continue
        tasks_file = os.path.join(folder, f"{stage}.tasks")
        script = sbatch_script(f"unlearn_sparse-{stage}", tasks_file, len(tasks), log_dir, extra, tasks[0].get("nodes", 1))
        script_file = os.path.join(folder, f"{stage}.sbatch")
        if not dry_run:
            with open(tasks_file, "w") as f:
                f.writelines(launch_command(t, slurm=True) + "\n" for t in tasks)
            with open(script_file, "w") as f:
                f.write(script)
        cmd = ["sbatch", "--parsable"]
        if job_ids:
            cmd.append("--dependency=afterok:" + ":".join(job_ids.values()))
        cmd.append(script_file)
        print(f"# {script_file} ({len(tasks)} tasks in {tasks_file}):\n{script}")
        for t in tasks:
            print(launch_command(t, slurm=True))
        print("$ " + shlex.join(cmd), flush=True)
        if dry_run:
            job_ids[stage] = f"<{stage} job id>"
            continue
        try:
            submitted = subprocess.run(cmd, capture_output=True, text=True, check=True)
        except FileNotFoundError:
            raise UserError("--backend slurm: sbatch not found; run on a Slurm login node, or use --backend local") from None
        except subprocess.CalledProcessError as err:
            raise UserError(f"sbatch refused {script_file}: {err.stderr.strip()}") from None
        job_ids[stage] = submitted.stdout.strip().split(";")[0]
        print(f"submitted {stage} array: job {job_ids[stage]}", flush=True)
    return job_ids


# ---------------------------------------------------------------- main


def main():
    if distributed.launched():
        raise UserError(
            "scripts/sweep.py starts its own processes: run it without torchrun (a grid's processes_per_task runs each task under torchrun)"
        )
    parser = argparse.ArgumentParser(prog="scripts/sweep.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grid", help="grid file (JSON), e.g. scripts/grids/digits.json")
    parser.add_argument("--out", required=True, help="run folder: masks/, unlearn/, logs/, sweep.json")
    parser.add_argument("--backend", choices=("local", "slurm"), default="local")
    parser.add_argument("--jobs", type=int, default=1, help="local: tasks at a time")
    parser.add_argument("--gpus", default=None, help="local: comma-separated GPU ids for the workers (default: every visible GPU)")
    parser.add_argument("--sbatch", default="", help='slurm: options for both arrays, e.g. "--partition gpu --gres gpu:1"')
    parser.add_argument("--dry-run", action="store_true", help="print the commands (and sbatch scripts); run nothing")
    parser.add_argument("--masks-only", action="store_true", help="run the mask tasks (the original models) and no unlearning")
    args = parser.parse_args()
    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: must be at least 1")

    out = os.path.abspath(args.out)
    grid = load_grid(args.grid)
    gpus = None
    if args.backend == "local":
        if grid.get("nodes_per_task", 1) > 1:
            raise UserError(f"{args.grid}: nodes_per_task {grid['nodes_per_task']} spans several machines: run it with --backend slurm")
        gpus = args.gpus.split(",") if args.gpus else visible_gpus()
        per_task = grid.get("processes_per_task", 1)
        if gpus and per_task > len(gpus):
            raise UserError(f"{args.grid}: processes_per_task {per_task} needs that many GPUs per task; the workers have {len(gpus)}")
    mask_tasks, unlearn_tasks = expand(grid, out)
    if args.masks_only:
        unlearn_tasks = []
    todo_masks = [t for t in mask_tasks if not finished(t)]
    todo_unlearn = [t for t in unlearn_tasks if not finished(t)]
    total = len(mask_tasks) + len(unlearn_tasks)
    warn_about_changed_tasks(mask_tasks + unlearn_tasks)
    print(f"# {args.grid}: {total} tasks, {total - len(todo_masks) - len(todo_unlearn)} finished, "
          f"{len(todo_masks)} mask and {len(todo_unlearn)} unlearning tasks to run", flush=True)  # fmt: skip
    if not args.dry_run:
        os.makedirs(out, exist_ok=True)
        manifest = {"grid": os.path.abspath(args.grid), "tasks": [{k: t[k] for k in ("name", "cmd", "result") if k in t} | {
            "labels": t.get("labels", {})} for t in mask_tasks + unlearn_tasks]}  # fmt: skip
        atomic_save_json(manifest, os.path.join(out, paths.SWEEP_MANIFEST))
        for task in unlearn_tasks:
            write_task_labels(task)

    if args.backend == "slurm":
        submit_slurm(todo_masks, todo_unlearn, out, sbatch_options(args.sbatch), args.dry_run)
        return
    if args.dry_run:
        for t in todo_masks + todo_unlearn:
            print(shlex.join(launch_command(t)))
        return
    # Tasks need not wait for what is already finished.
    made = {t["name"] for t in mask_tasks + unlearn_tasks if finished(t)}
    for t in todo_unlearn:
        t["after"] = [name for name in after(t) if name not in made]
    runner = LocalRunner(args.jobs, gpus, paths.sweep_logs_dir(out))
    os.makedirs(runner.log_dir, exist_ok=True)
    signal.signal(signal.SIGTERM, runner.stop)
    signal.signal(signal.SIGINT, runner.stop)
    results = runner.run_all(todo_masks, todo_unlearn)
    failed = {name: status for name, status in results.items() if status != "ok"}
    print(f"# ran {len(results)} tasks: {len(results) - len(failed)} ok, {len(failed)} not", flush=True)
    for name, status in failed.items():
        print(f"#   {name}: {status}")
    if failed or runner.stopping:
        sys.exit(1 if not runner.stopping else 143)


def cli():
    """scripts/sweep.py: main() with bad input as one line and exit 2."""
    try:
        main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    cli()
