"""optree.functools and optree.pytree with hand-written expected values: partial as a node,
reduce, a reexported pytree module for another namespace. No reference interpreter needed (the
values were read off optree 0.20.0)."""

from __future__ import annotations

import functools
import operator

import optree


def test_partial_is_a_callable_node():
    add_one = optree.functools.partial(operator.add, 1)
    assert repr(add_one) == 'optree.functools.partial(<built-in function add>, 1)'
    assert add_one(2) == 3
    assert isinstance(add_one, functools.partial)


def test_partial_flattens_its_arguments():
    tree = optree.functools.partial(dict, [1, {'a': 2}], k=3)
    leaves, spec = optree.tree_flatten(tree)
    assert leaves == [1, 2, 3]
    assert repr(spec) == (
        "PyTreeSpec(CustomTreeNode(partial[<class 'dict'>], [([*, {'a': *}],), {'k': *}]))"
    )
    assert optree.tree_paths(tree) == [('args', 0, 0), ('args', 0, 1, 'a'), ('keywords', 'k')]


def test_map_over_a_partial_gives_a_partial():
    assert optree.tree_map(lambda x: x * 10, optree.functools.partial(max, 1, 2))(5) == 20


def test_reduce():
    assert optree.functools.reduce(operator.add, [1, 2, 3]) == 6
    assert optree.functools.reduce(operator.add, [], 0) == 0


def test_reexport_binds_a_namespace():
    mine = optree.pytree.reexport(namespace='plain-pytree', module='plain_pkg.pytree')
    assert mine.__name__ == 'plain_pkg.pytree'
    leaves, spec = mine.flatten({'b': 1, 'a': 2})
    assert leaves == [2, 1]
    assert repr(spec) == "PyTreeSpec({'a': *, 'b': *})"

    class Node:
        def __init__(self, a):
            self.a = a

    mine.register_node(Node, lambda n: ((n.a,), None), lambda m, c: Node(*c))
    try:
        assert mine.flatten(Node([1, 2]))[0] == [1, 2]
        assert type(optree.tree_leaves(Node([1, 2]))[0]) is Node  # not in the global namespace
    finally:
        mine.unregister_node(Node)


def test_pytree_module_reexports_the_api():
    assert optree.pytree.flatten({'a': 1}) == optree.tree_flatten({'a': 1})
    assert optree.pytree.functools is optree.functools
    assert optree.pytree.dataclasses is optree.dataclasses
