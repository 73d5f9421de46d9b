"""Helpers shared by the benchmarks: honest timing and the result line."""

import os
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from utils import device_synchronize  # noqa: E402


def best_time(fn, device, repeats=3):
    """Best of `repeats` wall-clock runs (the least disturbed by other load) and the last output."""
    best, out = float("inf"), None
    for _ in range(repeats):
        device_synchronize(device)
        start = time.perf_counter()
        out = fn()
        device_synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best, out


def line(name, baseline, ours, floor=None, unit="s"):
    """`<name>: <baseline> -> <ours> (<ratio>x)`, plus the floor where one exists."""
    text = f"{name}: {baseline:.3f} -> {ours:.3f} ({baseline / ours:.2f}x)"
    if floor is not None:
        text += f"; floor {floor:.3f} ({ours / floor:.2f}x above)"
    return text + ("" if unit == "s" else f" [{unit}]")
