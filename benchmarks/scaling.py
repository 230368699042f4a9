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

Then ``optree.parallel`` (ours only; optree 0.20.0 has none), on 3.14t (threads) and 3.14
(subinterpreters), each with the default backend that ``executor=None`` picks there:
``optree.parallel.tree_map`` with 1 and 2 workers against serial ``optree.tree_map``, for a
CPU-bound leaf function (a pure-Python loop of about 50 us, ``parallel_work.spin``) over 200
leaves and a trivial one over 10,000 leaves (wall time, best of ``--parallel-repeats``); and
``pack`` -> ``Queue.put`` / ``Queue.get`` -> ``unpack`` into a subinterpreter against putting the
tree itself, for three trees, one shape sent 1,000 times and fresh shapes each time (CPU time
of the one thread that runs both interpreters, best of 3 rounds). Writes ``parallel.md`` and
``parallel.json``.
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


# optree.parallel, in the measured interpreter (ours only). Prints one JSON object.
PARALLEL_WORKER = r'''
import json, sys, time

BENCH_DIR, MODE, REPEATS, SENDS = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, BENCH_DIR)
import optree
import optree.parallel
import parallel_work as W


def best_of(variants, repeats):
    """Wall time of each variant, best of `repeats` rounds that run every variant once."""
    best = {name: float('inf') for name in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def mapping(func, tree):
    expected = optree.tree_map(func, tree)
    variants = {'serial': lambda: optree.tree_map(func, tree)}
    for workers in (1, 2):
        variants[f'parallel {workers}'] = (
            lambda workers=workers: optree.parallel.tree_map(func, tree, max_workers=workers)
        )
    for name, run in variants.items():  # warm up: the pools start here
        assert run() == expected, name
    return best_of(variants, REPEATS)


out = {
    'version': sys.version.split()[0],
    'gil_enabled': getattr(sys, '_is_gil_enabled', lambda: True)(),
    'optree': optree.__file__,
    'backend': optree.parallel._default_backend(W.spin),
}
start = time.perf_counter()
for _ in range(200):
    W.spin(1.0)
out['spin_us'] = (time.perf_counter() - start) / 200 * 1e6
cpu_tree, wide = W.cpu_tree(200), W.wide_tree()
out['cpu_leaves'] = len(optree.tree_leaves(cpu_tree))
out['wide_leaves'] = len(optree.tree_leaves(wide))
out['cpu_bound'] = mapping(W.spin, cpu_tree)
out['trivial'] = mapping(W.bump, wide)


def control(runners, calls=200):
    """Wall time of `calls` spin() calls split over `runners` threads (3.14t) or subinterpreters
    driven by threads (3.14), without optree: what two workers can gain on this machine now."""
    import threading

    share = calls // runners
    if MODE == 'threads':
        def work():
            for _ in range(share):
                W.spin(1.0)
        targets = [work] * runners
        pool = []
    else:
        from concurrent import interpreters

        pool = [interpreters.create() for _ in range(runners)]
        for interp in pool:
            interp.exec(f'import sys\nsys.path[:] = {sys.path!r}\nimport parallel_work')
        code = f'for _ in range({share}):\n    parallel_work.spin(1.0)\n'
        targets = [lambda interp=interp: interp.exec(code) for interp in pool]
    try:
        best = float('inf')
        for _ in range(REPEATS):
            threads = [threading.Thread(target=target) for target in targets]
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            best = min(best, time.perf_counter() - start)
        return best
    finally:
        for interp in pool:
            interp.close()


out['control'] = {'1': control(1), '2': control(2)}

from concurrent import interpreters

interpreter = interpreters.create()
queue = interpreters.create_queue()
try:
    interpreter.exec(f'import sys\nsys.path[:] = {sys.path!r}\nimport optree.parallel')
    interpreter.prepare_main(queue=queue)
    queues = {}
    for label, make in W.QUEUE_TREES.items():
        same = [make()] * SENDS
        rows = {}
        for shape in ('same shape', 'fresh shapes'):
            for method, put, get in (
                ('tree', queue.put, 'queue.get()'),
                ('pack', lambda tree: queue.put(optree.parallel.pack(tree)),
                 'optree.parallel.unpack(queue.get())'),
            ):
                loop = f'for _ in range({SENDS}):\n    {get}\n'
                times = []
                for round_ in range(3):
                    # Fresh shapes: new dict keys in every tree of every round (no cache hits).
                    trees = same
                    if shape == 'fresh shapes':
                        trees = [make(f'_{method}{round_}_{i}') for i in range(SENDS)]
                    start = time.thread_time()
                    for tree in trees:
                        put(tree)
                    interpreter.exec(loop)
                    times.append(time.thread_time() - start)
                rows[f'{shape}: {method}'] = min(times) / SENDS
        queues[label] = rows
        # Both ways give the same tree.
        queue.put(optree.parallel.pack(same[0]))
        interpreter.exec('queue.put(optree.parallel.pack(optree.parallel.unpack(queue.get())))')
        assert optree.parallel.unpack(queue.get()) == same[0]
    out['queue'] = queues
finally:
    interpreter.close()
print(json.dumps(out))
'''


def run_parallel(python: str, mode: str, repeats: int, sends: int) -> dict:
    completed = subprocess.run(
        [
            python,
            '-I',
            '-c',
            PARALLEL_WORKER,
            str(Path(__file__).resolve().parent),
            mode,
            str(repeats),
            str(sends),
        ],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
        cwd=os.path.expanduser('~'),
    )
    if completed.returncode != 0:
        raise SystemExit(f'{python} (optree.parallel, {mode}) failed:\n{completed.stderr}')
    return json.loads(completed.stdout.strip().splitlines()[-1])


def parallel_report(runs: list[dict], output_dir: Path) -> list[str]:
    """parallel.md / parallel.json from the optree.parallel runs; returns the summary lines."""
    cores = os.cpu_count()
    lines = [
        f'# optree.parallel ({cores} cores)',
        '',
        '`optree.parallel.tree_map(func, tree, max_workers=k)` with the default backend against '
        'serial `optree.tree_map(func, tree)`: wall time, best of the rounds; ratio = serial / '
        'parallel (above 1: parallel is faster).',
        '',
        '| Python | backend | work | leaves | serial | 1 worker | ratio | 2 workers | ratio |',
        '|---|---|---|---:|---:|---:|---:|---:|---:|',
    ]
    summary = []
    for run in runs:
        where = f'{run["version"]}{"t" if not run["gil_enabled"] else ""}'
        for key, label, leaves in (
            ('cpu_bound', f'spin, {run["spin_us"]:.0f} us/leaf', run['cpu_leaves']),
            ('trivial', 'x + 1', run['wide_leaves']),
        ):
            times = run[key]
            serial = times['serial']
            one, two = times['parallel 1'], times['parallel 2']
            lines.append(
                f'| {where} | {run["backend"]} | {label} | {leaves:,} | {serial * 1e3:.2f} ms '
                f'| {one * 1e3:.2f} ms | {serial / one:.2f} | {two * 1e3:.2f} ms '
                f'| {serial / two:.2f} |'
            )
            if key == 'cpu_bound':
                verdict = 'met' if serial / two >= 1.8 else 'MISSED'
                headroom = run['control']['1'] / run['control']['2']
                summary.append(
                    f'CPU-bound, 2 {run["backend"]} on {where}: {serial / two:.2f}x '
                    f'serial (target >= 1.8x: {verdict}; spin() alone on 2 '
                    f'{run["backend"]}, without optree: {headroom:.2f}x)'
                )
            else:
                verdict = 'met' if two / serial <= 2 else 'MISSED'
                summary.append(
                    f'trivial over {leaves:,} leaves, 2 {run["backend"]} on {where}: '
                    f'{two / serial:.2f}x serial time (target <= 2x: {verdict})'
                )
    lines += [
        '',
        'Control, without optree: 200 `spin()` calls on 1 runner, then split over 2 (threads on '
        '3.14t, subinterpreters driven by threads on 3.14); the ratio is the most two workers '
        'could gain on this machine during the run (about 2 on 2 idle cores).',
        '',
        '| Python | runners | 1 runner | 2 runners | ratio |',
        '|---|---|---:|---:|---:|',
    ]
    for run in runs:
        where = f'{run["version"]}{"t" if not run["gil_enabled"] else ""}'
        one, two = run['control']['1'], run['control']['2']
        lines.append(
            f'| {where} | {run["backend"]} | {one * 1e3:.2f} ms | {two * 1e3:.2f} ms '
            f'| {one / two:.2f} |'
        )
    lines += [
        '',
        '`pack` -> `Queue.put` / `Queue.get` -> `unpack` into a subinterpreter, against '
        '`Queue.put(tree)` / `Queue.get()` (which pickles the tree): per tree, CPU time of the '
        'thread that runs both interpreters (all puts, then one `exec` that gets them all), best '
        'of 3 rounds; ratio = tree / pack.',
        '',
        '| Python | tree | shapes | tree | pack | ratio |',
        '|---|---|---|---:|---:|---:|',
    ]
    targets = {'dict of 1,000 floats': 5.0, 'model-like tree, 409 nodes': 3.0}
    for run in runs:
        where = f'{run["version"]}{"t" if not run["gil_enabled"] else ""}'
        for label, rows in run['queue'].items():
            for shape in ('same shape', 'fresh shapes'):
                tree, packed = rows[f'{shape}: tree'], rows[f'{shape}: pack']
                lines.append(
                    f'| {where} | {label} | {shape} | {tree * 1e6:.1f} us '
                    f'| {packed * 1e6:.1f} us | {tree / packed:.2f} |'
                )
                if shape == 'same shape' and label in targets and run['gil_enabled']:
                    target = targets[label]
                    verdict = 'met' if tree / packed >= target else 'MISSED'
                    summary.append(
                        f'Queue, {label}, one shape, on {where}: pack/unpack '
                        f'{tree / packed:.2f}x faster (target >= {target:g}x: {verdict})'
                    )
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / 'parallel.md').write_text('\n'.join(lines) + '\n')
    (output_dir / 'parallel.json').write_text(json.dumps(runs, indent=2) + '\n')
    print('\n'.join(lines))
    return summary


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
    parser.add_argument(
        '--parallel-repeats',
        type=int,
        default=25,
        help='rounds of the optree.parallel tree_map timings (default: 25; the best one counts: '
        'on 2 cores a round often shares one with something else)',
    )
    parser.add_argument(
        '--parallel-sends',
        type=int,
        default=1000,
        help='trees sent through the queue per round (default: 1000)',
    )
    parser.add_argument(
        '--only',
        choices=('scaling', 'parallel'),
        help='run only the scaling or only the optree.parallel benchmarks',
    )
    args = parser.parse_args()
    if not args.threads and not args.interpreters:
        parser.error('nothing to measure: give --threads and/or --interpreters')
    parallel_summary = []
    if args.only != 'scaling':
        parallel_runs = []
        for mode, pair in (('threads', args.threads), ('interpreters', args.interpreters)):
            if pair:
                print(f'>>> optree.parallel, {mode}: ours ({pair[0]})', flush=True)
                parallel_runs.append(
                    run_parallel(pair[0], mode, args.parallel_repeats, args.parallel_sends)
                )
        parallel_summary = parallel_report(parallel_runs, args.output_dir)
        if args.only == 'parallel':
            for line in parallel_summary:
                print('parallel:', line)
            return 0

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
    for line in parallel_summary:
        print('parallel:', line)

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
