#!/usr/bin/env python3
"""Side-by-side timings: our optree against optree 0.20.0 from PyPI.

Usage::

    python benchmarks/flatten_side_by_side.py --ours .venv/bin/python \\
        --reference ~/.cache/optree-dev/reference/optree-0.20.0-.../bin/python

Both packages are imported as ``optree``, so each is measured in its own process: the worker
``_side_by_side_worker.py`` runs under each interpreter (``python -I``), alternating between
the two for ``--rounds`` rounds, and prints JSON. Per operation the median time per call over
all repeats is reported, per leaf, with the ratio optree 0.20.0 / ours (above 1 means ours is
faster). Prints a Markdown table; ``--output`` also writes the raw results as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

WORKER = Path(__file__).resolve().with_name('_side_by_side_worker.py')


def run_worker(python: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [python, '-I', str(WORKER), '--repeat', str(args.repeat),
           '--min-time', str(args.min_time)]
    for case in args.case or ():
        cmd += ['--case', case]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f'worker failed under {python} (exit {proc.returncode})')
    return json.loads(proc.stdout)


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool the repeats of several runs of one package: median seconds per call per case."""
    merged: dict[str, Any] = {k: v for k, v in runs[0].items() if k != 'cases'}
    cases: dict[str, Any] = {}
    for run in runs:
        for name, res in run['cases'].items():
            entry = cases.setdefault(name, {'samples': []})
            if 'error' in res:
                entry['error'] = res['error']
                continue
            entry['leaves'] = res['leaves']
            entry['check'] = res['check']
            entry['samples'].extend(res['seconds_per_call'])
    for entry in cases.values():
        if entry['samples'] and 'error' not in entry:
            entry['median_s'] = statistics.median(entry['samples'])
            entry['ns_per_leaf'] = entry['median_s'] * 1e9 / entry['leaves']
    merged['cases'] = cases
    return merged


def fmt_ns(value: float | None) -> str:
    if value is None:
        return 'n/a'
    return f'{value:.1f}' if value < 100 else f'{value:.0f}'


def table(ref: dict[str, Any], ours: dict[str, Any]) -> str:
    lines = [
        f'Python {ours["python"]}{" (free-threaded)" if ours["free_threaded"] else ""}; '
        f'optree {ref["optree_version"]} (PyPI) vs ours {ours["optree_version"]}; '
        'median time per call / leaves.',
        '',
        '| operation | leaves | optree 0.20.0 ns/leaf | ours ns/leaf | ratio (optree/ours) |',
        '|---|---:|---:|---:|---:|',
    ]
    notes = []
    for name, r in ref['cases'].items():
        o = ours['cases'].get(name, {'error': 'not measured'})
        r_ns = r.get('ns_per_leaf')
        o_ns = o.get('ns_per_leaf')
        ratio = f'{r_ns / o_ns:.2f}x' if r_ns and o_ns else 'n/a'
        leaves = r.get('leaves', o.get('leaves', '?'))
        lines.append(f'| `{name}` | {leaves} | {fmt_ns(r_ns)} | {fmt_ns(o_ns)} | {ratio} |')
        if 'error' in o:
            notes.append(f'- ours, `{name}`: {o["error"]}')
        if 'error' in r:
            notes.append(f'- optree 0.20.0, `{name}`: {r["error"]}')
        if 'check' in r and 'check' in o and r['check'] != o['check']:
            notes.append(f'- `{name}`: results differ from optree 0.20.0 (repr digest)')
    if notes:
        lines += ['', *notes]
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--ours', default=sys.executable, help='python with our optree')
    parser.add_argument('--reference', default=os.environ.get('OPTREE_REFERENCE_PYTHON'),
                        help='python with optree 0.20.0 (default: $OPTREE_REFERENCE_PYTHON)')
    parser.add_argument('--rounds', type=int, default=2, help='alternating runs per package')
    parser.add_argument('--repeat', type=int, default=5, help='timed loops per run')
    parser.add_argument('--min-time', type=float, default=0.1, help='seconds per timed loop')
    parser.add_argument('--case', action='append', help='only these operations')
    parser.add_argument('--output', type=Path, help='write raw results as JSON here')
    args = parser.parse_args(argv)
    if not args.reference:
        parser.error('--reference (or $OPTREE_REFERENCE_PYTHON) is required')

    start = time.monotonic()
    ref_runs, our_runs = [], []
    for _ in range(args.rounds):
        ref_runs.append(run_worker(args.reference, args))
        our_runs.append(run_worker(args.ours, args))
    ref, ours = merge(ref_runs), merge(our_runs)
    if ref['optree_file'] == ours['optree_file']:
        raise SystemExit('both interpreters import the same optree: check --ours/--reference')

    print(table(ref, ours))
    print(f'\n({args.rounds} rounds x {args.repeat} repeats, {time.monotonic() - start:.0f} s)')
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({'reference': ref, 'ours': ours}, indent=1) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
