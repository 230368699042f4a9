"""pyperf benchmark suite of one library on some tree shapes; run by ``side_by_side.py``.

Runs under the python of the library's own virtualenv, with ``python -I`` so that the working
directory cannot shadow the installed package. Two steps:

1. ``--describe``: print as JSON the library's version, its cases (statement, or why the
   operation is N/A), the leaf and node counts of each tree, and per case a repetition count
   calibrated so that one timed value lasts about ``--calibrate-time`` seconds.
2. The pyperf run::

       python -I benchmarks/_suite.py --library jax --shapes list1000 --reps reps.json \
           --loops 1 --warmups 1 --processes 3 --values 3 -o out.json

   Everything but ``--library``, ``--shapes`` and ``--reps`` is pyperf's command line: its
   manager spawns worker processes that run this script again and record every value.

``--subinterpreter`` (both steps, and so every pyperf worker): once the library is imported,
create a subinterpreter, import the library in it and destroy it, before anything is timed.
optree 0.20.0 takes its slower per-interpreter registry path from then on: its pybind11
storage counts the interpreters that loaded the extension (a subinterpreter that does not
import optree leaves it on the fast path).

Why the calibration happens in step 1 and not in pyperf: pyperf calibrates the loop count in
an extra worker process per benchmark, and a worker process pays the library's import (1.5 s
for jax or torch on this machine) before it times anything. Calibrating all cases of a
library in one process, then giving pyperf ``--loops 1`` and the repetitions as
``inner_loops``, keeps the run time reasonable and the result identical in kind: pyperf
divides each value by the number of calls it made.
"""

from __future__ import annotations

import argparse
import json
import sys
import sysconfig
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import libraries
import trees

# Each timed loop iteration runs the statement this many times, so that the loop's own cost
# (a few ns) stays small next to the fastest operations (a treespec hash is tens of ns).
UNROLL = 10

# The clock: CPU time of this thread (user + system, so page faults still count), not wall
# time. The development machines run several jobs on 2 cores; wall time then mostly measures
# how long the process waited for a core, and ratios drift by 2x from run to run.
CLOCK = time.thread_time
CLOCK_NAME = 'time.thread_time (CPU time of the thread)'


def compile_timer(stmt: str, names: dict[str, Any]) -> Callable[[int], float]:
    """A pyperf time function running ``stmt`` UNROLL times per loop, names bound as locals."""
    params = ''.join(f', {name}={name}' for name in names)
    body = ''.join(f'        {stmt}\n' for _ in range(UNROLL))
    source = (
        f'def time_func(loops, clock=clock{params}):\n'
        f'    start = clock()\n'
        f'    for _ in range(loops):\n'
        f'{body}'
        f'    return clock() - start\n'
    )
    namespace: dict[str, Any] = dict(names, clock=CLOCK)
    exec(compile(source, f'<{stmt}>', 'exec'), namespace)
    return namespace['time_func']


def repeated(timer: Callable[[int], float], reps: int) -> Callable[[int], float]:
    return lambda loops: timer(loops * reps)


def visit_subinterpreter(module_name: str) -> None:
    """Create a subinterpreter, import ``module_name`` in it, destroy it (CPython 3.14+)."""
    import concurrent.interpreters  # type: ignore[import-not-found,unused-ignore]

    interp = concurrent.interpreters.create()
    try:
        interp.exec(f'import {module_name}')
    finally:
        interp.close()


def gil_enabled() -> bool:
    """Whether the GIL is on now (a free-threaded build turns it on for an extension module
    that does not declare free-threading support)."""
    return bool(getattr(sys, '_is_gil_enabled', lambda: True)())


def selected_shapes(spec: str) -> list[trees.TreeShape]:
    wanted = spec.split(',') if spec != 'all' else [s.name for s in trees.SHAPES]
    unknown = set(wanted) - {s.name for s in trees.SHAPES}
    if unknown:
        raise SystemExit(f'unknown tree shapes: {sorted(unknown)}')
    return [s for s in trees.SHAPES if s.name in wanted]


def calibrate(timer: Callable[[int], float], min_time: float) -> int:
    """Repetitions (of UNROLL calls each) for one timed value to last at least min_time."""
    reps = 1
    while True:
        elapsed = timer(reps)
        if elapsed >= min_time:
            return reps
        # Jump close to the target once a measurement is long enough to trust, else double.
        guess = int(reps * min_time / elapsed * 1.2) if elapsed > 1e-3 else reps * 4
        reps = max(reps * 2, min(guess, reps * 100))


MODULES = {key: module for key, _, module in libraries.LIBRARIES}


def describe(
    library_key: str, shapes: list[trees.TreeShape], min_time: float, subinterpreter: bool
) -> dict[str, Any]:
    library = libraries.load(library_key)
    module = sys.modules[MODULES[library_key]]
    if subinterpreter:
        visit_subinterpreter(MODULES[library_key])
    result: dict[str, Any] = {
        'library': library_key,
        'version': library.version(),
        'module_file': getattr(module, '__file__', None),
        'python': sys.version.split()[0],
        'free_threaded': bool(sysconfig.get_config_var('Py_GIL_DISABLED')),
        'shapes': {},
    }
    for shape in shapes:
        entry: dict[str, Any] = {'leaves': None, 'nodes': None, 'library_leaves': None}
        if library.unsupported(shape) is None:
            tree = shape.build(library.pair)
            expected = trees.count_nodes(tree, lambda node: type(node) is library.pair)
            entry.update(
                leaves=expected[0], nodes=expected[1], library_leaves=len(library.leaves(tree))
            )
        entry['cases'] = {}
        for op, case in library.cases_for(shape).items():
            if isinstance(case, libraries.NotAvailable):
                entry['cases'][op] = {'na': case.reason}
                continue
            timer = compile_timer(case.stmt, case.names)
            try:  # one run, so that a failing case is reported instead of timed
                timer(1)
            except Exception as exc:
                entry['cases'][op] = {'na': f'fails: {type(exc).__name__}: {exc}'[:200]}
                continue
            entry['cases'][op] = {
                'stmt': case.stmt,
                'impl': case.impl,
                'reps': calibrate(timer, min_time),
            }
        result['shapes'][shape.name] = entry
    result['gil_enabled'] = gil_enabled()
    return result


def main() -> int:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument('--library', required=True, choices=[key for key, _, _ in libraries.LIBRARIES])
    own.add_argument('--shapes', default='all', help='comma-separated tree shapes, or all')
    own.add_argument('--describe', action='store_true')
    own.add_argument(
        '--calibrate-time',
        type=float,
        default=0.05,
        help='--describe: seconds one timed value should last',
    )
    own.add_argument('--reps', type=Path, help='JSON {benchmark name: repetitions}')
    own.add_argument(
        '--subinterpreter',
        action='store_true',
        help='create a subinterpreter that imports the library and destroy it before timing',
    )
    args, rest = own.parse_known_args()
    # torch warns about its own deprecated LeafSpec on every unpickling; keep logs readable.
    warnings.filterwarnings('ignore', category=FutureWarning)
    shapes = selected_shapes(args.shapes)

    if args.describe:
        json.dump(
            describe(args.library, shapes, args.calibrate_time, args.subinterpreter), sys.stdout
        )
        print()
        return 0

    import pyperf  # only in the benchmark venvs, not needed for --describe

    def add_cmdline_args(cmd: list[str], _: argparse.Namespace) -> None:
        cmd.extend(['--library', args.library, '--shapes', args.shapes])
        if args.reps:
            cmd.extend(['--reps', str(args.reps)])
        if args.subinterpreter:
            cmd.append('--subinterpreter')

    sys.argv = [sys.argv[0], *rest]
    runner = pyperf.Runner(add_cmdline_args=add_cmdline_args)
    library = libraries.load(args.library)
    if args.subinterpreter:
        visit_subinterpreter(MODULES[args.library])
    runner.metadata['library'] = args.library
    runner.metadata['library_version'] = library.version()
    runner.metadata['clock'] = CLOCK_NAME
    runner.metadata['gil_enabled'] = str(gil_enabled())
    in_worker = runner.parse_args().worker
    reps_by_name: dict[str, int] = json.loads(args.reps.read_text()) if args.reps else {}
    # Workers must register the same benchmarks in the same order as the manager: pyperf
    # tells a worker which one to run by its position. With --reps, the cases listed there
    # (those --describe found to work) are the ones registered.
    for shape in shapes:
        for op, case in library.cases_for(shape).items():
            name = f'{op}/{shape.name}'
            if isinstance(case, libraries.NotAvailable) or (args.reps and name not in reps_by_name):
                continue
            reps = reps_by_name.get(name, 1)
            timer = compile_timer(case.stmt, case.names)
            runner.bench_time_func(name, repeated(timer, reps), inner_loops=UNROLL * reps)
            if not in_worker:
                print(f'@@done {name}', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
