#!/usr/bin/env python3
"""Parallel scaling of flatten and tree_map: ours and optree 0.20.0 side by side, in one run.

On free-threaded CPython (3.14t) the work runs on 1, 2, ..., N threads of one interpreter; on
CPython 3.14 on 1, 2, ..., N subinterpreters (``concurrent.interpreters``, one thread driving
each). Every worker repeats the same operation a fixed number of times; throughput is the
total number of operations over the wall time of the slowest worker, and the scaling ratio is
throughput on k workers over throughput on one.

Usage::

    benchmarks/scaling.py --threads OURS_314T REF_314T --interpreters OURS_314 REF_314 \\
        [--workers 4] [--seconds 0.5] [--output-dir results]

Each PYTHON is a virtualenv interpreter with the optree to measure installed (ours, or
optree==0.20.0 from ``tools/reference_venv.py``). Writes ``scaling.md`` (a Markdown table),
``scaling.json`` and, when matplotlib is importable here, ``scaling.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

# Runs inside the measured interpreter. Prints one JSON object: version, optree file, and per
# operation and worker count the wall time of `iterations` operations per worker.
WORKER = r'''
import json, sys, threading, time

MODE, MAX_WORKERS, SECONDS = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])

SETUP = """
import optree
TREE = [{'a': i, 'b': (i, [i, None]), 'c': {'x': i, 'y': (i,)}} for i in range(100)]
def flatten():
    optree.tree_flatten(TREE)
def tree_map():
    optree.tree_map(lambda x: x, TREE)
"""
OPERATIONS = ('flatten', 'tree_map')

namespace = {}
exec(SETUP, namespace)
import optree

def calibrate(operation):
    run = namespace[operation]
    iterations, start = 0, time.perf_counter()
    while time.perf_counter() - start < SECONDS / 4:
        run()
        iterations += 1
    return max(10, int(iterations * SECONDS / (time.perf_counter() - start)))

def measure_threads(operation, workers, iterations):
    barrier = threading.Barrier(workers + 1)
    ends = []
    def worker():
        # Each thread works on its own tree, as each subinterpreter does: shared objects would
        # measure CPython's shared reference counting rather than the library.
        own = {}
        exec(SETUP, own)
        run = own[operation]
        barrier.wait()
        for _ in range(iterations):
            run()
        ends.append(time.perf_counter())
    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return max(ends) - start

def measure_interpreters(operation, workers, iterations):
    from concurrent import interpreters
    pool = [interpreters.create() for _ in range(workers)]
    try:
        for interpreter in pool:
            interpreter.exec(f"import sys\nsys.path[:] = {sys.path!r}\n" + SETUP)
            interpreter.exec(f"{operation}()")  # warm up
        barrier = threading.Barrier(workers + 1)
        ends, errors = [], []
        loop = f"for _ in range({iterations}):\n    {operation}()\n"
        def worker(interpreter):
            barrier.wait()
            try:
                interpreter.exec(loop)
            except Exception as ex:
                errors.append(str(ex).splitlines()[0])
            ends.append(time.perf_counter())
        threads = [threading.Thread(target=worker, args=(i,)) for i in pool]
        for thread in threads:
            thread.start()
        barrier.wait()
        start = time.perf_counter()
        for thread in threads:
            thread.join()
        if errors:
            raise RuntimeError(errors[0])
        return max(ends) - start
    finally:
        for interpreter in pool:
            interpreter.close()

measure = measure_threads if MODE == 'threads' else measure_interpreters
results, failures = {}, {}
for operation in OPERATIONS:
    iterations = calibrate(operation)
    rows = {}
    for workers in range(1, MAX_WORKERS + 1):
        try:
            best = min(measure(operation, workers, iterations) for _ in range(3))
        except Exception as ex:
            failures.setdefault(operation, {})[workers] = f'{type(ex).__name__}: {ex}'
            continue
        rows[workers] = workers * iterations / best
    results[operation] = rows
print(json.dumps({
    'version': sys.version.split()[0],
    'gil_enabled': getattr(sys, '_is_gil_enabled', lambda: True)(),
    'optree': optree.__file__,
    'throughput': results,
    'failures': failures,
}))
'''


def run_worker(python: str, mode: str, workers: int, seconds: float) -> dict:
    completed = subprocess.run(
        [python, '-I', '-c', WORKER, mode, str(workers), str(seconds)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
        cwd=os.path.expanduser('~'),
    )
    if completed.returncode != 0:
        raise SystemExit(f'{python} ({mode}) failed:\n{completed.stderr}')
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--threads',
        nargs=2,
        metavar=('OURS', 'REFERENCE'),
        help='free-threaded (3.14t) interpreters with ours / optree 0.20.0',
    )
    parser.add_argument(
        '--interpreters',
        nargs=2,
        metavar=('OURS', 'REFERENCE'),
        help='CPython 3.14 interpreters with ours / optree 0.20.0',
    )
    parser.add_argument(
        '--workers',
        type=int,
        default=os.cpu_count() or 2,
        help='largest number of threads / subinterpreters (default: nproc)',
    )
    parser.add_argument(
        '--seconds',
        type=float,
        default=0.5,
        help='approximate duration of one worker run (default: 0.5)',
    )
    parser.add_argument('--output-dir', type=Path, default=Path('results'))
    args = parser.parse_args()
    if not args.threads and not args.interpreters:
        parser.error('nothing to measure: give --threads and/or --interpreters')

    runs = []
    for mode, pair in (('threads', args.threads), ('interpreters', args.interpreters)):
        if not pair:
            continue
        for label, python in zip(('ours', 'optree 0.20.0'), pair, strict=True):
            print(f'>>> {mode}: {label} ({python})', flush=True)
            result = run_worker(python, mode, args.workers, args.seconds)
            if mode == 'threads' and result['gil_enabled']:
                raise SystemExit(f'{python}: the GIL is enabled, so threads cannot scale')
            runs.append({'mode': mode, 'label': label, 'python': python, **result})

    cores = os.cpu_count()
    lines = [
        f'# Parallel scaling ({cores} cores; throughput in operations per second, '
        'ratio = k workers / 1 worker)',
        '',
        'Tree: 100 dicts of 6 leaves (600 leaves), one per worker. flatten = `tree_flatten`, '
        'map = `tree_map(lambda x: x, tree)`. Failures of a library are shown as such.',
        '',
        '| workers | operation | mode | ours ops/s | ours ratio | optree 0.20 ops/s '
        '| optree 0.20 ratio | ours / optree 0.20 |',
        '|---:|---|---|---:|---:|---:|---:|---:|',
    ]
    by_key = {(run['mode'], run['label']): run for run in runs}
    summary = []
    for mode in ('threads', 'interpreters'):
        ours, theirs = by_key.get((mode, 'ours')), by_key.get((mode, 'optree 0.20.0'))
        if ours is None or theirs is None:
            continue
        where = f'{mode} ({ours["version"]}{"t" if mode == "threads" else ""})'
        for operation in ours['throughput']:
            o_rows, t_rows = ours['throughput'][operation], theirs['throughput'][operation]
            for workers in sorted(set(o_rows) | set(t_rows), key=int):
                cells = []
                ratios = []
                for rows, run in ((o_rows, ours), (t_rows, theirs)):
                    if workers in rows:
                        ratios.append(rows[workers] / rows['1'] if '1' in rows else None)
                        ratio = '-' if ratios[-1] is None else f'{ratios[-1]:.2f}'
                        cells += [f'{rows[workers]:,.0f}', ratio]
                    else:
                        ratios.append(None)
                        error = run['failures'].get(operation, {}).get(workers, 'no data')
                        cells += [f'fails: {error[:60]}', '-']
                both = workers in o_rows and workers in t_rows
                speedup = f'{o_rows[workers] / t_rows[workers]:.2f}' if both else '-'
                lines.append(
                    f'| {workers} | {operation} | {where} | '
                    + ' | '.join(cells)
                    + f' | {speedup} |'
                )
                if int(workers) == min(args.workers, cores or 1):
                    shown = ['-' if r is None else f'x{r:.2f}' for r in ratios]
                    summary.append(
                        f'{operation} on {workers} {mode}: ours {shown[0]}, optree 0.20 {shown[1]}'
                    )
    args.output_dir.mkdir(parents=True, exist_ok=True)
    table = '\n'.join(lines) + '\n'
    (args.output_dir / 'scaling.md').write_text(table)
    (args.output_dir / 'scaling.json').write_text(json.dumps(runs, indent=2) + '\n')
    print(table)
    for line in summary:
        print('scaling:', line)

    try:
        import matplotlib

        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        print('matplotlib is not installed: no plot')
        return 0
    modes = [m for m in ('threads', 'interpreters') if (m, 'ours') in by_key]
    figure, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4.5), squeeze=False)
    for axis, mode in zip(axes[0], modes, strict=True):
        for label, style in (('ours', '-'), ('optree 0.20.0', '--')):
            run = by_key.get((mode, label))
            if run is None:
                continue
            for operation, rows in run['throughput'].items():
                if '1' not in rows:
                    continue
                workers = sorted(rows, key=int)
                axis.plot(
                    [int(w) for w in workers],
                    [rows[w] / rows['1'] for w in workers],
                    style,
                    marker='o',
                    label=f'{label}: {operation}',
                )
        top = args.workers
        axis.plot([1, top], [1, top], ':', color='grey', label='linear')
        axis.set_title(f'{mode} ({cores} cores)')
        axis.set_xlabel(f'{mode}')
        axis.set_ylabel('throughput / throughput on 1')
        axis.legend(fontsize='small')
    figure.tight_layout()
    figure.savefig(args.output_dir / 'scaling.png', dpi=100)
    print(f'>>> wrote {args.output_dir / "scaling.md"} and {args.output_dir / "scaling.png"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
