"""Run entry scripts in processes forked from one that has imported the project once.

A script that stops at a bad option spends nearly all its time importing torch (about 2 s
on 2 cores); the bad-input tests run 58 of them. This server imports the entry scripts'
modules once, then runs each request in a fork of itself: the script's own file as
`__main__` (runpy), with its argv, its working folder and its stdout and stderr in files,
so the same code path as `python script.py ...` but the interpreter's start. A fork of a
process that has run no torch operation is safe (no thread pool to inherit).

    server = ScriptServer(); result = server.run("main_imp.py", ["--rate", "1.5"]); server.close()

`result` has returncode, stdout and stderr, as subprocess.run's.
"""

import json
import os
import subprocess
import sys
import tempfile
from types import SimpleNamespace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRELOAD = ("main_imp", "main_synflow", "main_forget", "main_backdoor")


class ScriptServer:
    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout.readline().strip() == "ready"

    def run(self, script, args):
        with tempfile.TemporaryDirectory() as folder:
            out, err = os.path.join(folder, "stdout"), os.path.join(folder, "stderr")
            request = {"script": os.path.join(ROOT, script), "args": [str(a) for a in args], "stdout": out, "stderr": err}
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            returncode = json.loads(self.proc.stdout.readline())["returncode"]
            with open(out) as f_out, open(err) as f_err:
                return SimpleNamespace(returncode=returncode, stdout=f_out.read(), stderr=f_err.read())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def run_in_child(request):
    """In the forked child: the script as __main__, then exit with its status (never returns)."""
    import runpy
    import traceback

    status = 0
    try:
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        sys.argv = [request["script"], *request["args"]]
        sys.path[0] = os.path.dirname(request["script"])
        runpy.run_path(request["script"], run_name="__main__")
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if not isinstance(stop.code, (int, type(None))):
            print(stop.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 -- as the interpreter would: the traceback on stderr, status 1
        traceback.print_exc()
        status = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def serve():
    import importlib

    sys.path.insert(0, ROOT)
    for name in PRELOAD:
        importlib.import_module(name)
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            run_in_child(request)
        _, status = os.waitpid(pid, 0)
        returncode = os.waitstatus_to_exitcode(status)
        print(json.dumps({"returncode": returncode}), flush=True)


if __name__ == "__main__":
    serve()
