"""Time a few optree operations in *this* interpreter and print the results as JSON.

Run by ``benchmarks/flatten_side_by_side.py`` once under our package's python and once under
the reference venv's python (both packages are imported as ``optree``, so each is measured in
a process of its own). Run it with ``python -I`` so the current directory cannot shadow the
installed package.

Method: ``timeit``'s autorange picks a loop count that takes at least ``--min-time`` seconds,
then ``--repeat`` such loops are timed; the driver takes the median.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import sysconfig
import timeit
from collections.abc import Callable
from typing import Any

import optree


def make_nested(width: int = 100) -> dict[str, Any]:
    """A model-parameter-like tree: dicts of tuples and dicts, ints as leaves (9 per layer)."""
    return {
        f'layer{i:03d}': {
            'weight': (i, i + 1, i + 2, i + 3),
            'bias': (i, i + 1),
            'meta': {'step': i, 'shape': (i, (i, None))},
        }
        for i in range(width)
    }


def cases() -> dict[str, tuple[int, Callable[[], Any]]]:
    """name -> (number of leaves, zero-argument callable to time)."""
    flat = list(range(1000))
    nested = make_nested()
    leaves, spec = optree.tree_flatten(nested)
    n = len(leaves)
    tree_flatten = optree.tree_flatten
    tree_leaves = optree.tree_leaves
    tree_structure = optree.tree_structure
    tree_unflatten = optree.tree_unflatten
    tree_map = optree.tree_map
    return {
        'tree_flatten(list of 1,000 ints)': (len(flat), lambda: tree_flatten(flat)),
        'tree_flatten(nested dict/tuple)': (n, lambda: tree_flatten(nested)),
        'tree_leaves(nested dict/tuple)': (n, lambda: tree_leaves(nested)),
        'tree_structure(nested dict/tuple)': (n, lambda: tree_structure(nested)),
        'tree_unflatten(nested dict/tuple)': (n, lambda: tree_unflatten(spec, leaves)),
        'tree_map(abs, nested dict/tuple)': (n, lambda: tree_map(abs, nested)),
    }


def fingerprint(value: Any) -> str:
    """A short digest of a result's repr, to check both packages computed the same thing."""
    return hashlib.sha256(repr(value).encode()).hexdigest()[:12]


def measure(func: Callable[[], Any], repeat: int, min_time: float) -> tuple[int, list[float]]:
    timer = timeit.Timer(func)
    number = 1
    while True:  # timeit.Timer.autorange, with a configurable minimum time
        for factor in (1, 2, 5):
            count = number * factor
            if timer.timeit(count) >= min_time:
                return count, [t / count for t in timer.repeat(repeat=repeat, number=count)]
        number *= 10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--repeat', type=int, default=7)
    parser.add_argument('--min-time', type=float, default=0.1)
    parser.add_argument('--case', action='append', default=None, help='only these cases')
    args = parser.parse_args()

    results: dict[str, Any] = {}
    for name, (leaves, func) in cases().items():
        if args.case and name not in args.case:
            continue
        try:
            check = fingerprint(func())
            loops, per_call = measure(func, args.repeat, args.min_time)
        except Exception as exc:  # report and go on: a missing function must not stop the rest
            results[name] = {'error': f'{type(exc).__name__}: {exc}'}
            continue
        results[name] = {'leaves': leaves, 'loops': loops, 'seconds_per_call': per_call,
                         'check': check}

    json.dump(
        {
            'python': sys.version.split()[0],
            'implementation': platform.python_implementation(),
            'free_threaded': bool(sysconfig.get_config_var('Py_GIL_DISABLED')),
            'executable': sys.executable,
            'optree_version': getattr(optree, '__version__', '?'),
            'optree_file': optree.__file__,
            'cases': results,
        },
        sys.stdout,
    )
    print()
    return 0


if __name__ == '__main__':
    sys.exit(main())
