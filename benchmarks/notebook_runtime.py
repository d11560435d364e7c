"""Seconds to run each notebook top to bottom, on a quiet machine and with one core kept busy by another process.

A lecturer's or student's laptop is rarely idle, so the limits the notebooks are held to (a lesson within 2 minutes,
a solutions notebook within 3, on 2 cores) are checked with a second process spinning on one core. Each notebook
runs in a fresh kernel as nbval runs it (`jupyter nbconvert --execute`, outputs discarded), the two conditions
interleaved, the median of `--repeats` runs each.

    OMNIGLOT_DIR=... MINIIMAGENET_DIR=... python benchmarks/notebook_runtime.py [--repeats 1] [--notebooks ...]
"""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import subprocess
import sys
import time
from pathlib import Path

from helpers.device import machine_name

ROOT = Path(__file__).resolve().parent.parent
LIMITS = {"lesson": 120.0, "solutions": 180.0}  # seconds, with one core busy


def spin() -> None:
    while True:
        pass


def run_notebook(path: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--stdout",
                    "--ExecutePreprocessor.timeout=900", str(path)], cwd=path.parent, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notebooks", nargs="*", type=Path, default=sorted((ROOT / "notebooks").glob("*.ipynb")))
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    print(f"{machine_name()} | limits with one core busy: lesson "
          f"{LIMITS['lesson']:.0f} s, solutions {LIMITS['solutions']:.0f} s")
    print(f"{'notebook':48s} {'quiet (s)':>10s} {'one core busy (s)':>18s}  within limit")
    over = 0
    for path in (p.resolve() for p in args.notebooks):  # nbconvert runs in the notebook's folder
        times: dict[str, list[float]] = {"quiet": [], "busy": []}
        for _ in range(args.repeats):
            times["quiet"].append(run_notebook(path))
            spinner = multiprocessing.Process(target=spin, daemon=True)
            spinner.start()
            try:
                times["busy"].append(run_notebook(path))
            finally:
                spinner.terminate()
                spinner.join()
        quiet, busy = (statistics.median(times[k]) for k in ("quiet", "busy"))
        limit = LIMITS["solutions" if path.stem.endswith("_solutions") else "lesson"]
        over += busy > limit
        print(f"{path.name:48s} {quiet:10.1f} {busy:18.1f}  {'yes' if busy <= limit else 'NO'}", flush=True)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
