"""Every registered unlearning method (`unlearn.METHODS`), plain and with `--amp --channels_last`,
as `main_forget.py` runs it, in one process (one import of torch for all of them); a step of
`bench/gpu_check.sh`.

    python bench/gpu_check_methods.py --mask MASK --out DIR [main_forget.py options ...]

Options after the known ones go to every run (the device, the data caps). Each method runs
with tiny settings (two epochs; Retrain (pipeline) one epoch per state), and a method that
fails is reported with its one-line error and the run goes on to the next. Prints one line
per (method, variant); writes DIR/methods.json; exits 1 when any failed.
"""

import argparse
import json
import logging
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import arg_parser  # noqa: E402
import main_forget  # noqa: E402
import unlearn  # noqa: E402
import unlearning_run  # noqa: E402
from errors import UserError
from utils import setup_logging  # noqa: E402

# Read by the methods that use them, ignored by the others: two epochs (FT_prune_bi prunes
# every second one), a learning rate no method diverges at, Retrain (pipeline)'s two states.
TINY = ["--unlearn_epochs", "2", "--unlearn_lr", "0.001", "--epochs", "1", "--decreasing_lr", "50"]
TINY += ["--pruning_times", "2", "--prune_type", "lt", "--iu_damping", "100", "--msteps", "1"]
VARIANTS = {"plain": [], "amp+channels_last": ["--amp", "--channels_last"], "channels_last": ["--channels_last"]}


def run_one(method, variant, mask, out, extra):
    save_dir = os.path.join(out, f"{method}-{variant}")
    argv = ["--mask", mask, "--unlearn", method, "--save_dir", save_dir, *TINY, *VARIANTS[variant], *extra]
    row = {"method": method, "variant": variant}
    start = time.perf_counter()
    try:
        args = arg_parser.parse_args(argv)
        main_forget.check_forget_args(args)
        unlearning_run.forget(args)
        with open(os.path.join(save_dir, f"{method}eval_result.json")) as f:
            result = json.load(f)
        row.update(status="ok", UA=result["UA"], RA=result["RA"], TA=result["TA"], unlearn_seconds=result["unlearn_seconds"])
        row["device"] = result.get("device")
    except UserError as err:
        row.update(status="FAILED", error=f"error: {err}")
    except Exception as err:  # noqa: BLE001 -- reported, and the next method runs
        row.update(status="FAILED", error=f"{type(err).__name__}: {err}")
        traceback.print_exc()
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


def describe(row):
    if row["status"] != "ok":
        return f"{row['method']:<20} {row['variant']:<18} FAILED  {row['error']}"
    return (
        f"{row['method']:<20} {row['variant']:<18} ok      UA {row['UA']:6.2f}  RA {row['RA']:6.2f}  TA {row['TA']:6.2f}  "
        f"unlearning {row['unlearn_seconds']:7.2f} s  (run {row['seconds']:.1f} s on {row['device']})"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mask", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--variants", default="plain,amp+channels_last", help="comma-separated, of: " + ", ".join(VARIANTS))
    known, extra = parser.parse_known_args()
    os.makedirs(known.out, exist_ok=True)
    setup_logging()
    logging.getLogger("unlearn_sparse").setLevel(logging.WARNING)  # one line per run here; each run's folder has its results
    rows = []
    print(f"# {len(unlearn.METHODS)} registered methods: {', '.join(unlearn.METHODS)}", flush=True)
    for method in unlearn.METHODS:
        for variant in known.variants.split(","):
            rows.append(run_one(method, variant, known.mask, known.out, extra))
            print(describe(rows[-1]), flush=True)
    with open(os.path.join(known.out, "methods.json"), "w") as f:
        json.dump(rows, f, indent=2)
    failed = [f"{r['method']} ({r['variant']})" for r in rows if r["status"] != "ok"]
    print(f"# methods: {len(rows) - len(failed)} of {len(rows)} runs ok" + (f"; failed: {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
