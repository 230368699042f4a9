#!/usr/bin/env python3
"""Side-by-side benchmarks: ours against optree 0.20.0, jax.tree_util, torch.utils._pytree
and dm-tree, each in its own virtualenv, timed with pyperf.

Usage (``make bench`` runs it with our package's python)::

    .venv/bin/python -I benchmarks/side_by_side.py [--fast] [--output-dir results]
        [--shapes tiny3,dcmodel] [--libraries ours,optree-0.20.0]
        [--python build/scaling/venv-3.14/bin/python [--subinterpreter]]

Steps: make sure the competitors' venvs exist (``tools/bench_venvs.py``, cached out of tree),
describe and calibrate every case once per library (``_suite.py --describe``), then time
them with pyperf, tree shape by tree shape and library after library, so that a change in
the machine's load hits every library alike. Writes into ``--output-dir``:
``side_by_side.md`` (the table), ``side_by_side.png`` (the chart), ``side_by_side.json`` (the
medians, for ``report.py``) and ``raw/`` (pyperf's JSON and logs, one file per run).

Conditions: ``--python`` times another interpreter with our package installed (the optree
0.20.0 venv is then made for that interpreter; a free-threaded one runs single-threaded), and
``--subinterpreter`` has every process create a subinterpreter that imports the library, then
destroy it, before timing (CPython 3.14+). With either, the outputs are named after the
condition: ``side_by_side-py314-subinterp.md``, ``raw-py314-subinterp/``, ...; the report's
title says which interpreter and condition it is.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SUITE = HERE / '_suite.py'
sys.path.insert(0, str(HERE))

import _suite  # noqa: E402
import libraries  # noqa: E402
import report  # noqa: E402
import trees  # noqa: E402

# jax and torch take 1.5-2 s to import, paid again by every pyperf worker process.
HEAVY_IMPORTS = ('jax', 'torch')


class Progress:
    """One status line, rewritten in place on a terminal, or a line per step otherwise."""

    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.start = time.monotonic()
        self.tty = sys.stdout.isatty()
        self.last_print = 0.0

    def step(self, label: str) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        line = (
            f'[{self.done:4d}/{self.total} {100 * self.done / self.total:3.0f}%] '
            f'{label:<44.44} elapsed {elapsed / 60:4.1f} min, ~{eta / 60:4.1f} min left'
        )
        if self.tty:
            print('\r' + line, end='', flush=True)
        elif elapsed - self.last_print >= 20 or self.done == self.total:
            print(line, flush=True)
            self.last_print = elapsed

    def finish(self) -> None:
        if self.tty:
            print(flush=True)


def ensure_venv(kind: str, python: str) -> tuple[str, dict[str, Any]]:
    """Path of a benchmark venv's python and its marker (what installed, what did not)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'bench_venvs.py'), kind, python],
        stdout=subprocess.PIPE,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f'could not create the {kind} benchmark venv')
    venv_python = proc.stdout.strip().splitlines()[-1]
    marker = Path(venv_python).parent.parent / '.optree-bench-ready'
    return venv_python, json.loads(marker.read_text())


def probe(python: str) -> dict[str, Any]:
    """Version and flavour of an interpreter."""
    code = (
        'import json, sys, sysconfig; print(json.dumps({"version": list(sys.version_info[:3]), '
        '"free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED"))}))'
    )
    proc = subprocess.run([python, '-I', '-c', code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f'cannot run {python}: {proc.stderr.strip()}')
    info: dict[str, Any] = json.loads(proc.stdout)
    return info


def describe(
    python: str, library: str, shapes: str, calibrate_time: float, extra: list[str]
) -> dict[str, Any]:
    proc = subprocess.run(
        [
            python,
            '-I',
            str(SUITE),
            '--library',
            library,
            '--shapes',
            shapes,
            '--describe',
            '--calibrate-time',
            str(calibrate_time),
            *extra,
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ['no output'])[-1]
        raise RuntimeError(tail)
    return json.loads(proc.stdout)


def run_suite(
    python: str,
    library: str,
    shape: str,
    reps: Path,
    out: Path,
    log: Path,
    pyperf_args: list[str],
    progress: Progress,
) -> None:
    cmd = [
        python,
        '-I',
        str(SUITE),
        '--library',
        library,
        '--shapes',
        shape,
        '--reps',
        str(reps),
        '--loops',
        '1',
        *pyperf_args,
        '-o',
        str(out),
    ]
    with open(log, 'w') as log_file:
        log_file.write(' '.join(cmd) + '\n')
        log_file.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            log_file.write(line)
            if line.startswith('@@done '):
                progress.step(f'{library}: {line.split()[1]}')
        if proc.wait() != 0:
            raise SystemExit(f'pyperf run failed: {library} on {shape}; see {log}')


def load_pyperf(path: Path) -> dict[str, dict[str, Any]]:
    import pyperf

    cells: dict[str, dict[str, Any]] = {}
    for bench in pyperf.BenchmarkSuite.load(str(path)).get_benchmarks():
        values = bench.get_values()
        timed_runs = [run for run in bench.get_runs() if run.values]
        cells[bench.get_name()] = {
            'median': bench.median(),
            'mad': bench.median_abs_dev() if len(values) > 1 else 0.0,
            'values': len(values),
            'runs': bench.get_nrun(),
            'min': min(values),
            'stdev': statistics.stdev(values) if len(values) > 1 else 0.0,
            'gil_enabled': any(
                run.get_metadata().get('gil_enabled') == 'True' for run in timed_runs
            ),
        }
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--fast',
        action='store_true',
        help=f'quick look: trees {", ".join(trees.FAST_SHAPES)}, one worker '
        'process per benchmark, shorter values',
    )
    parser.add_argument('--output-dir', type=Path, default=Path('results'))
    parser.add_argument(
        '--libraries',
        default=','.join(k for k, _, _ in libraries.LIBRARIES),
        help='comma-separated subset of: %(default)s',
    )
    parser.add_argument(
        '--shapes', help='comma-separated tree shapes (default: all, or the --fast ones)'
    )
    parser.add_argument(
        '--processes',
        type=int,
        help='pyperf worker processes per benchmark (default 2; 1 with --fast)',
    )
    parser.add_argument(
        '--heavy-processes',
        type=int,
        help='the same for jax and torch, which pay a long import in every process (default 1)',
    )
    parser.add_argument('--values', type=int, help='timed values per process (default 3)')
    parser.add_argument(
        '--value-time', type=float, help='seconds per timed value (default 0.03; 0.02 with --fast)'
    )
    parser.add_argument(
        '--microbench',
        type=Path,
        help='Google Benchmark JSON of benchmarks/cpp to include in the report',
    )
    parser.add_argument(
        '--python',
        help='interpreter with our package installed (default: this one); the optree 0.20.0 '
        'and other venvs are made for it',
    )
    parser.add_argument(
        '--subinterpreter',
        action='store_true',
        help='every process creates a subinterpreter that imports the library and destroys '
        'it before timing (CPython 3.14+)',
    )
    args = parser.parse_args(argv)

    processes = args.processes or (1 if args.fast else 2)
    heavy_processes = args.heavy_processes or 1
    values = args.values or 3
    value_time = args.value_time or (0.02 if args.fast else 0.03)
    shape_names = (
        args.shapes.split(',')
        if args.shapes
        else list(trees.FAST_SHAPES)
        if args.fast
        else [s.name for s in trees.SHAPES]
    )
    wanted = args.libraries.split(',')
    if 'ours' not in wanted:
        parser.error('--libraries must include ours: every ratio is relative to it')
    python = args.python or sys.executable
    interpreter = probe(python)
    version = '.'.join(map(str, interpreter['version']))
    if args.subinterpreter and interpreter['version'][:2] < [3, 14]:
        parser.error(f'--subinterpreter needs CPython 3.14+ (concurrent.interpreters): {version}')
    tag = ''
    if args.python or args.subinterpreter:
        major, minor = interpreter['version'][:2]
        tag = f'py{major}{minor}{"t" if interpreter["free_threaded"] else ""}'
        tag += '-subinterp' if args.subinterpreter else ''
    stem = f'side_by_side-{tag}' if tag else 'side_by_side'
    suite_extra = ['--subinterpreter'] if args.subinterpreter else []
    output_dir: Path = args.output_dir
    raw = output_dir / (f'raw-{tag}' if tag else 'raw')
    shutil.rmtree(raw, ignore_errors=True)
    raw.mkdir(parents=True)

    start = time.monotonic()
    load_before = ', '.join(f'{x:.1f}' for x in os.getloadavg())
    print(
        f'>>> side by side: {", ".join(wanted)} on {len(shape_names)} trees'
        f'{" (--fast)" if args.fast else ""}, CPython {version}'
        f'{" free-threaded" if interpreter["free_threaded"] else ""}'
        f'{", after a subinterpreter" if args.subinterpreter else ""}',
        flush=True,
    )

    # 1. Virtualenvs: ours is the given interpreter's; the others are cached out of tree.
    pythons: dict[str, str] = {'ours': python}
    skipped: dict[str, str] = {}
    if 'optree-0.20.0' in wanted:
        pythons['optree-0.20.0'], _ = ensure_venv('reference', python)
    if set(wanted) & {'jax', 'torch', 'dm-tree'}:
        others_python, marker = ensure_venv('others', python)
        for key in ('jax', 'torch', 'dm-tree'):
            if key not in wanted:
                continue
            if key in marker['failed']:
                skipped[key] = f'does not install on this interpreter: {marker["failed"][key]}'
            else:
                pythons[key] = others_python

    # 2. Describe and calibrate each library once.
    library_info: list[dict[str, Any]] = []
    descriptions: dict[str, dict[str, Any]] = {}
    for key, label, _ in libraries.LIBRARIES:
        if key not in wanted:
            continue
        info: dict[str, Any] = {'key': key, 'label': label}
        library_info.append(info)
        if key in skipped:
            info.update(status='skipped', reason=skipped[key])
            continue
        print(f'>>> calibrating {label}', flush=True)
        try:
            descriptions[key] = describe(
                pythons[key], key, ','.join(shape_names), value_time, suite_extra
            )
        except RuntimeError as exc:
            info.update(status='skipped', reason=f'fails to load: {exc}')
            continue
        info.update(status='ok', version=descriptions[key]['version'])
    if 'ours' not in descriptions:
        raise SystemExit('our package could not be loaded: run make install')
    if (
        descriptions.get('optree-0.20.0', {}).get('module_file')
        == descriptions['ours']['module_file']
    ):
        raise SystemExit('ours and optree 0.20.0 resolve to the same module: check the venvs')

    # 3. Time, shape by shape, library after library.
    total = sum(
        1
        for d in descriptions.values()
        for s in d['shapes'].values()
        for c in s['cases'].values()
        if 'reps' in c
    )
    progress = Progress(total)
    for shape in shape_names:
        for key, description in descriptions.items():
            cases = description['shapes'][shape]['cases']
            reps = {f'{op}/{shape}': c['reps'] for op, c in cases.items() if 'reps' in c}
            if not reps:
                continue
            reps_file = raw / f'{key}-{shape}.reps.json'
            reps_file.write_text(json.dumps(reps))
            procs = heavy_processes if key in HEAVY_IMPORTS else processes
            pyperf_args = [
                '--processes',
                str(procs),
                '--values',
                str(values),
                '--warmups',
                '1',
                '--quiet',
                *suite_extra,
            ]
            run_suite(
                pythons[key],
                key,
                shape,
                reps_file,
                raw / f'{key}-{shape}.json',
                raw / f'{key}-{shape}.log',
                pyperf_args,
                progress,
            )
    progress.finish()

    # 4. Collect and report.
    gil_on: set[str] = set()  # the libraries timed with the GIL on (free-threaded builds)
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    for key, description in descriptions.items():
        timed: dict[str, dict[str, Any]] = {}
        for shape in shape_names:
            path = raw / f'{key}-{shape}.json'
            if path.exists():
                timed.update(load_pyperf(path))
        per_op: dict[str, dict[str, Any]] = cells.setdefault(key, {})
        for shape, entry in description['shapes'].items():
            for op, case in entry['cases'].items():
                name = f'{op}/{shape}'
                if 'na' in case:
                    result = {'na': case['na']}
                elif name in timed:
                    result = dict(timed[name], impl=case['impl'], stmt=case['stmt'])
                    if result.pop('gil_enabled') or description['gil_enabled']:
                        gil_on.add(key)
                else:
                    result = {'na': 'not measured'}
                per_op.setdefault(op, {})[shape] = result
            if entry['library_leaves'] != entry['leaves']:
                info = next(i for i in library_info if i['key'] == key)
                info.setdefault('notes', []).append(
                    f'{shape}: {entry["library_leaves"]} leaves, expected {entry["leaves"]}'
                )

    ours_shapes = descriptions['ours']['shapes']
    import pyperf

    condition = f'CPython {version}'
    if interpreter['free_threaded']:
        condition += ' free-threaded, one thread, ' + (
            f'but with the GIL enabled for {", ".join(sorted(gil_on))}'
            if gil_on
            else 'GIL disabled'
        )
    if args.subinterpreter:
        condition += (
            ', after a subinterpreter imported the library and was destroyed (in every '
            'process, before timing)'
        )

    results = {
        'meta': {
            'python': descriptions['ours']['python'],
            'condition': condition,
            'tag': tag,
            'machine': f'{platform.machine()}, {os.cpu_count()} CPUs',
            'date': time.strftime('%Y-%m-%d %H:%M %Z'),
            'duration_s': time.monotonic() - start,
            'load_before': load_before,
            'load_after': ', '.join(f'{x:.1f}' for x in os.getloadavg()),
            'pyperf': pyperf.__version__,
            'method': (
                f'clock {_suite.CLOCK_NAME}; {processes} worker process(es) per benchmark '
                f'({heavy_processes} for jax and torch, whose import takes seconds) x {values} '
                f'values of ~{value_time:g} s after 1 warmup; each value times '
                f'{_suite.UNROLL} calls per repetition, repetitions calibrated once per case '
                'beforehand'
            ),
            'fast': args.fast,
        },
        'libraries': library_info,
        'shapes': {
            shape.name: {
                'description': shape.description,
                'leaves': ours_shapes[shape.name]['leaves'],
                'nodes': ours_shapes[shape.name]['nodes'],
                'operations': shape.operations,
            }
            for shape in (next(s for s in trees.SHAPES if s.name == n) for n in shape_names)
        },
        'operations': [list(op) for op in libraries.OPERATIONS],
        'cells': cells,
    }
    (output_dir / f'{stem}.json').write_text(json.dumps(results, indent=1) + '\n')
    print()
    print(report.write(results, output_dir, args.microbench, stem))
    print(f'\n>>> side by side took {(time.monotonic() - start) / 60:.1f} min', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
