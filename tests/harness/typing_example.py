"""A typed program written against optree 0.20.0's API; mypy must accept it on our package.

tests/test_typing.py runs mypy on this file (and on a broken variant that mypy must reject);
`make lint` checks it too. It is also run as a script by that test, so it must work, not just
type-check.
"""

from __future__ import annotations

import dataclasses
import operator
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Any, NamedTuple

import optree
from optree import PyTreeAccessor, PyTreeKind, PyTreeSpec
from optree.typing import CustomTreeNode, PyTree, PyTreeTypeVar

IntTree = PyTreeTypeVar('IntTree', int)


class Point(NamedTuple):
    x: int
    y: int


@optree.dataclasses.register_node(namespace='typing-example')
@dataclasses.dataclass
class Layer:
    weight: list[int]
    bias: int
    name: str = dataclasses.field(default='layer', metadata={'pytree_node': False})


class Pair:
    def __init__(self, left: Any, right: Any) -> None:
        self.left = left
        self.right = right

    def __tree_flatten__(self, /) -> tuple[tuple[Any, Any], None, tuple[str, str]]:
        return (self.left, self.right), None, ('left', 'right')

    @classmethod
    def __tree_unflatten__(cls, metadata: Hashable | None, children: Iterable[Any], /) -> Pair:
        return cls(*children)


optree.register_pytree_node_class(Pair, path_entry_type=None, namespace='typing-example')


def total(tree: PyTree[int]) -> int:
    return optree.tree_sum(tree)


def rescale(tree: Any, factor: int) -> Any:
    # Trees built from plain containers are typed Any: PyTree[T] is an annotation for values
    # that went through optree, which mypy cannot infer from a dict literal.
    return optree.tree_map(lambda x: x * factor, tree)


def value_and_square(x: int) -> Any:
    return {'value': x, 'square': x * x}


def describe(spec: PyTreeSpec) -> str:
    kind: PyTreeKind = spec.kind
    counts: tuple[int, int, int] = (spec.num_leaves, spec.num_nodes, spec.num_children)
    return f'{kind.name}: {counts}'


def main() -> None:
    tree: Any = {'b': [1, 2], 'a': (Point(3, 4), None), 'c': OrderedDict(z=5)}
    leaves: list[int]
    leaves, spec = optree.tree_flatten(tree)
    assert leaves == [3, 4, 1, 2, 5]
    rebuilt = optree.tree_unflatten(spec, leaves)
    assert rebuilt == tree
    doubled = rescale(tree, 2)
    assert optree.tree_leaves(doubled) == [6, 8, 2, 4, 10]
    paths: list[tuple[Any, ...]] = optree.tree_paths(tree)
    accessors: list[PyTreeAccessor] = optree.tree_accessors(tree)
    assert [accessor(tree) for accessor in accessors] == leaves
    assert len(paths) == spec.num_leaves
    codes: list[str] = [accessor.codify('tree') for accessor in accessors]
    assert codes[0] == "tree['a'][0].x"
    assert describe(spec) == 'DICT: (5, 11, 3)'
    assert total(tree) == 15
    assert optree.tree_reduce(operator.add, tree, 0) == 15
    assert optree.tree_max(tree) == 5 and optree.tree_min(tree, default=0) == 1
    assert optree.tree_all(tree) and optree.tree_any(tree)

    with_paths = optree.tree_map_with_path(lambda path, x: (path, x), tree)
    assert optree.tree_leaves(with_paths, is_leaf=lambda node: isinstance(node, tuple))
    prefix: Any = [1, 2]
    full: Any = [[10, 20], 30]
    broadcast = optree.tree_broadcast_map(operator.add, prefix, full)
    assert broadcast == [[11, 21], 32]
    numbers: Any = [1, 2]
    transposed: Any = optree.tree_transpose_map(value_and_square, numbers)
    assert transposed == {'value': [1, 2], 'square': [1, 4]}
    mixed: Any = [1, 5, (3,)]
    kept, dropped = optree.tree_partition(lambda x: x > 2, mixed)
    assert kept == [None, 5, (3,)] and dropped == [1, None, (None,)]

    leaf: PyTreeSpec = optree.treespec_leaf()
    pair_spec = optree.treespec_tuple([leaf, optree.treespec_list([leaf, leaf])])
    assert pair_spec.unflatten([1, 2, 3]) == (1, [2, 3])
    assert optree.treespec_is_prefix(leaf, pair_spec)
    assert optree.treespec_paths(pair_spec) == [(0,), (1, 0), (1, 1)]
    children: list[PyTreeSpec] = optree.treespec_children(pair_spec)
    assert len(children) == 2

    layer: Any = Layer(weight=[1, 2], bias=3)
    layer_leaves: list[int]
    layer_leaves, layer_spec = optree.tree_flatten(layer, namespace='typing-example')
    assert layer_leaves == [1, 2, 3]
    assert optree.tree_unflatten(layer_spec, layer_leaves) == layer
    pair: Any = Pair(1, [2])
    assert optree.tree_leaves(pair, namespace='typing-example') == [1, 2]

    bound: Any = optree.functools.partial(operator.add, 1)
    assert bound(2) == 3
    assert optree.tree_leaves(bound) == [1]

    node: CustomTreeNode[Any] = Pair(1, [2])
    assert node.__tree_flatten__()[0] == (1, [2])
    assert optree.is_namedtuple(Point(1, 2)) and optree.namedtuple_fields(Point) == ('x', 'y')
    assert IntTree is not None


if __name__ == '__main__':
    main()
    print('typing example ok')
