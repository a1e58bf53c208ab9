#!/usr/bin/env python3
"""Baseline for scripts/bench-tasks: no-op tasks through multiprocessing.Pool.imap_unordered.

The same work as the amp benchmark: N tasks, each an integer sent to a worker process that
returns it unchanged; the parent consumes every result (``sum`` over the iterator, in C) and
checks the total. The pool is started and warmed up before the clock starts, as ampd and its
workers are already running when the amp client starts timing.

Prints one line per run, ``tasks_per_s=<float> tasks=<n> chunksize=<c> processes=<p>
seconds=<s>``, so that bench_tasks (supervisor/examples/bench_tasks.rs) can parse it.

    python3 scripts/bench_mp_pool.py --tasks 2000000 --chunksize 1000 --processes 2
"""

import argparse
import multiprocessing
import sys
import time


def noop(x):
    """The task: return the input unchanged (the amp side runs amp-echo)."""
    return x


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=1_000_000, help="tasks per run")
    ap.add_argument("--chunksize", type=int, default=1000, help="imap_unordered chunksize")
    ap.add_argument("--processes", type=int, default=2, help="pool size")
    ap.add_argument("--runs", type=int, default=1, help="timed runs on one pool")
    args = ap.parse_args()
    if args.tasks < 1 or args.chunksize < 1 or args.processes < 1 or args.runs < 1:
        print("error: --tasks, --chunksize, --processes and --runs must be >= 1", file=sys.stderr)
        return 2

    n = args.tasks
    expected = n * (n - 1) // 2
    with multiprocessing.Pool(processes=args.processes) as pool:
        # Warm-up: every worker has started and run a few chunks before timing.
        warm = args.processes * args.chunksize * 4
        if sum(pool.imap_unordered(noop, range(warm), chunksize=args.chunksize)) != warm * (warm - 1) // 2:
            print("error: warm-up results are wrong", file=sys.stderr)
            return 1
        for _ in range(args.runs):
            t0 = time.perf_counter()
            total = sum(pool.imap_unordered(noop, range(n), chunksize=args.chunksize))
            dt = time.perf_counter() - t0
            if total != expected:
                print(f"error: results sum to {total}, expected {expected}", file=sys.stderr)
                return 1
            print(
                f"tasks_per_s={n / dt:.1f} tasks={n} chunksize={args.chunksize} "
                f"processes={args.processes} seconds={dt:.4f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
