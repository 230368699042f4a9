#!/usr/bin/env python3
"""A short tour of the PyTree API: flatten, unflatten, map, paths.

Run with the python that has our package installed (``make bench`` does):
``.venv/bin/python -I benchmarks/showcase.py``. The same script runs unchanged under
optree 0.20.0, which is the point: the API is a drop-in replacement.
"""

from __future__ import annotations

import collections
import sys

import optree


def show(label: str, value: object) -> None:
    print(f'{label:<28} {value!r}')


def main() -> int:
    print(f'optree {optree.__version__} from {optree.__file__}')
    print(f'Python {sys.version.split()[0]}\n')

    Point = collections.namedtuple('Point', ['x', 'y'])
    tree = {'b': (1, [2, 3]), 'a': Point(4, 5), 'c': None, 'd': {'e': 6}}
    show('tree', tree)

    leaves, spec = optree.tree_flatten(tree)
    show('tree_flatten -> leaves', leaves)
    show('tree_flatten -> treespec', spec)
    show('treespec.num_leaves', spec.num_leaves)

    rebuilt = optree.tree_unflatten(spec, [x * 10 for x in leaves])
    show('tree_unflatten(x * 10)', rebuilt)

    show('tree_map(x + 1)', optree.tree_map(lambda x: x + 1, tree))
    show('tree_map(+, tree, tree)', optree.tree_map(lambda x, y: x + y, tree, tree))
    show('tree_leaves(none_is_leaf)', optree.tree_leaves(tree, none_is_leaf=True))
    show('tree_paths', optree.tree_paths(tree))

    assert optree.tree_unflatten(spec, leaves) == tree
    return 0


if __name__ == '__main__':
    sys.exit(main())
