"""The trees the side-by-side benchmarks run on (standard library only).

Every library gets structurally the same trees with the same leaves (ints, never None, since
dm-tree treats None as a leaf where the others treat it as an empty node). The custom node
type is one class, registered by each library in its own way (``libraries.py``); it lives at
module level so that treespecs holding it can be pickled.
"""

from __future__ import annotations

import collections
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


@dataclass(frozen=True)
class TreeShape:
    name: str
    description: str
    build: Callable[[Callable[[Any, Any], Any]], Any]  # takes the library's Pair factory


SHAPES: tuple[TreeShape, ...] = (
    TreeShape('list1000', 'list of 1,000 ints', lambda _: flat_list()),
    TreeShape('dict100x10', 'dict of 100 tuples of 10 ints', lambda _: dict_of_tuples()),
    TreeShape('chain200', 'nested 1-element lists, depth 200', lambda _: chain()),
    TreeShape('model_s', 'OrderedDict of namedtuples of lists, 4 layers', lambda _: model(4, 4, 1)),
    TreeShape('model_m', 'the same, 24 layers', lambda _: model(24, 12, 2)),
    TreeShape('model_l', 'the same, 160 layers', lambda _: model(160, 16, 4)),
    TreeShape('custom', '100 custom nodes, each nesting a tuple and another', custom),
)

# --fast: the shapes with budget targets: flat, nested dict/tuple, model-like.
FAST_SHAPES = ('list1000', 'dict100x10', 'model_m')


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
        else:
            leaves += 1
    return leaves, nodes
