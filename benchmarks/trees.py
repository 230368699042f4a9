"""The trees the side-by-side benchmarks run on (standard library only).

Every library gets structurally the same trees with the same leaves (ints or floats, never
None, since dm-tree treats None as a leaf where the others treat it as an empty node). The
custom node types are classes registered by each library in its own way (``libraries.py``);
they live at module level so that treespecs holding them can be pickled. The ``dcmodel`` tree
is made of :mod:`optree.dataclasses` classes, so it lives in ``dc_model.py``, imported only by
the optree-compatible libraries.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple


class Param(NamedTuple):
    """One layer's parameters, like a model's state: weights and biases."""

    weight: list[int]
    bias: list[int]


class Pair:
    """A user-defined container with two children, registered as a custom node."""

    __slots__ = ('left', 'right')

    def __init__(self, left: Any, right: Any) -> None:
        self.left = left
        self.right = right

    def __eq__(self, other: object) -> bool:
        return type(other) is Pair and (self.left, self.right) == (other.left, other.right)

    def __hash__(self) -> int:
        return hash((self.left, self.right))


class Point:
    """A user-defined class with two children and a metadata field, registered with Python
    flatten / unflatten callbacks (``libraries.py``): the ``pycustom`` tree."""

    __slots__ = ('unit', 'x', 'y')

    def __init__(self, x: Any, y: Any, unit: str = 'm') -> None:
        self.x = x
        self.y = y
        self.unit = unit

    def __eq__(self, other: object) -> bool:
        return type(other) is Point and (self.x, self.y, self.unit) == (
            other.x,
            other.y,
            other.unit,
        )

    def __hash__(self) -> int:
        return hash((self.x, self.y, self.unit))


def flat_list(size: int = 1000) -> list[int]:
    return list(range(size))


def dict_of_tuples(keys: int = 100, width: int = 10) -> dict[str, tuple[int, ...]]:
    return {f'key{i:03d}': tuple(range(i, i + width)) for i in range(keys)}


def chain(depth: int = 200) -> list[Any]:
    """Nested one-element lists, ``depth`` deep around a single leaf."""
    tree: Any = 0
    for _ in range(depth):
        tree = [tree]
    return tree


def model(layers: int, width: int, biases: int) -> collections.OrderedDict[str, Param]:
    """Model-parameter-like: OrderedDict of namedtuples of lists of ints."""
    return collections.OrderedDict(
        (f'layer{i:03d}', Param(list(range(i, i + width)), list(range(biases))))
        for i in range(layers)
    )


def custom(make_pair: Callable[[Any, Any], Any], size: int = 100) -> list[Any]:
    """A list of custom nodes, each nesting a tuple and another custom node."""
    return [make_pair(i, (i, make_pair(i, i + 1))) for i in range(size)]


def points(size: int = 300) -> list[Point]:
    return [Point(i, i + 1) for i in range(size)]


def tiny() -> dict[str, Any]:
    """Three leaves: what a call costs beyond the work per node."""
    return {'x': 1.0, 'y': (2, 3)}


def dataclass_model(_: Any) -> Any:
    import dc_model  # needs optree.dataclasses: only the optree-compatible libraries build it

    return dc_model.build()


@dataclass(frozen=True)
class TreeShape:
    name: str
    description: str
    build: Callable[[Callable[[Any, Any], Any]], Any]  # takes the library's Pair factory
    # The operations timed on this tree (libraries.OPERATIONS keys); None: all of them.
    operations: tuple[str, ...] | None = None


# The trees added for their budget rows are timed on those operations only, so that
# `make bench` does not take much longer: every case costs pyperf worker processes, and each
# jax or torch process seconds of imports.
BUDGET_OPERATIONS = ('tree_flatten', 'tree_unflatten', 'tree_map', 'tree_map_3', 'treespec_eq')


SHAPES: tuple[TreeShape, ...] = (
    TreeShape('list1000', 'list of 1,000 ints', lambda _: flat_list()),
    TreeShape('dict100x10', 'dict of 100 tuples of 10 ints', lambda _: dict_of_tuples()),
    TreeShape('chain200', 'nested 1-element lists, depth 200', lambda _: chain()),
    TreeShape('model_s', 'OrderedDict of namedtuples of lists, 4 layers', lambda _: model(4, 4, 1)),
    TreeShape('model_m', 'the same, 24 layers', lambda _: model(24, 12, 2)),
    TreeShape('model_l', 'the same, 160 layers', lambda _: model(160, 16, 4)),
    TreeShape('custom', '100 custom nodes, each nesting a tuple and another', custom),
    TreeShape(
        'dcmodel',
        'optree.dataclasses model: 64 blocks of 3 dense layers (2 float leaves and a '
        'metadata field each), a name per block',
        dataclass_model,
        BUDGET_OPERATIONS,
    ),
    TreeShape(
        'pycustom',
        'list of 300 objects registered with Python flatten/unflatten callbacks '
        '(2 children, 1 metadata field)',
        lambda _: points(),
        BUDGET_OPERATIONS,
    ),
    TreeShape(
        'tiny3', "{'x': 1.0, 'y': (2, 3)}: per-call overhead", lambda _: tiny(), BUDGET_OPERATIONS
    ),
)

# --fast: the shapes with budget targets: flat, nested dict/tuple, model-like, and the 3-leaf
# tree of the per-call overhead.
FAST_SHAPES = ('list1000', 'dict100x10', 'model_m', 'tiny3')


def count_nodes(tree: Any, is_pair: Callable[[Any], bool]) -> tuple[int, int]:
    """(leaves, nodes) of one of the trees above, counted independently of any library."""
    stack, leaves, nodes = [tree], 0, 0
    while stack:
        node = stack.pop()
        nodes += 1
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
        elif is_pair(node):
            stack.extend((node.left, node.right))
        elif isinstance(node, Point):
            stack.extend((node.x, node.y))
        elif dataclasses.is_dataclass(node) and not isinstance(node, type):
            stack.extend(
                getattr(node, f.name)
                for f in dataclasses.fields(node)
                if f.init and f.metadata.get('pytree_node', True)
            )
        else:
            leaves += 1
    return leaves, nodes
