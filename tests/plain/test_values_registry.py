"""optree.registry with hand-written expected values: registering and unregistering custom nodes
(functions and register_pytree_node_class), namespaces, path entries, the errors,
dict_insertion_ordered. No reference interpreter needed (the values were read off optree 0.20.0)."""

from __future__ import annotations

import pytest

import optree


class Box:
    def __init__(self, v):
        self.v = v

    def __repr__(self):
        return f'Box({self.v!r})'


@pytest.fixture
def box_namespace(namespace):
    optree.register_pytree_node(
        Box, lambda b: ((b.v,), None, ('v',)), lambda m, c: Box(*c), namespace=namespace
    )
    yield namespace
    optree.unregister_pytree_node(Box, namespace=namespace)


def test_a_registered_node_flattens_in_its_namespace_only(box_namespace):
    leaves, spec = optree.tree_flatten(Box([1, 2]), namespace=box_namespace)
    assert leaves == [1, 2]
    assert repr(spec) == (
        f'PyTreeSpec(CustomTreeNode(Box[None], [[*, *]]), namespace={box_namespace!r})'
    )
    assert spec.namespace == box_namespace
    leaves, spec = optree.tree_flatten(Box([1, 2]))
    assert repr(leaves) == '[Box([1, 2])]'
    assert repr(spec) == 'PyTreeSpec(*)'


def test_entries_become_paths(box_namespace):
    assert optree.tree_paths(Box([1, 2]), namespace=box_namespace) == [('v', 0), ('v', 1)]
    assert optree.tree_structure(Box(1), namespace=box_namespace).entries() == ['v']


def test_unflatten_rebuilds_through_the_registered_function(box_namespace):
    spec = optree.tree_structure(Box([1, 2]), namespace=box_namespace)
    rebuilt = optree.tree_unflatten(spec, ['a', 'b'])
    assert type(rebuilt) is Box and rebuilt.v == ['a', 'b']
    assert repr(optree.tree_map(str, Box((1,)), namespace=box_namespace)) == "Box(('1',))"


def test_registering_twice_raises(box_namespace):
    with pytest.raises(ValueError, match='is already registered in namespace'):
        optree.register_pytree_node(
            Box, lambda b: ((b.v,), None), lambda m, c: Box(*c), namespace=box_namespace
        )


def test_builtin_types_cannot_be_registered(namespace):
    with pytest.raises(
        ValueError,
        match=r"PyTree type <class 'list'> is a built-in type and cannot be re-registered",
    ):
        optree.register_pytree_node(
            list, lambda x: ((), None), lambda m, c: [], namespace=namespace
        )


def test_unregistering_twice_raises(namespace):
    optree.register_pytree_node(
        Box, lambda b: ((b.v,), None), lambda m, c: Box(*c), namespace=namespace
    )
    optree.unregister_pytree_node(Box, namespace=namespace)
    with pytest.raises(ValueError, match='is not registered in namespace'):
        optree.unregister_pytree_node(Box, namespace=namespace)
    assert repr(optree.tree_leaves(Box(1), namespace=namespace)) == '[Box(1)]'


def test_empty_namespace_is_rejected():
    with pytest.raises(ValueError, match=r'The namespace cannot be an empty string\.'):
        optree.register_pytree_node(Box, lambda b: ((), None), lambda m, c: Box(1), namespace='')


def test_register_pytree_node_class(namespace):
    @optree.register_pytree_node_class(namespace=namespace)
    class Pair:
        def __init__(self, a, b):
            self.a, self.b = a, b

        def tree_flatten(self):
            return (self.a, self.b), 'meta'

        @classmethod
        def tree_unflatten(cls, metadata, children):
            return cls(*children)

        def __repr__(self):
            return f'Pair({self.a!r}, {self.b!r})'

    try:
        spec = optree.tree_structure(Pair(1, [2]), namespace=namespace)
        assert repr(spec) == (
            f"PyTreeSpec(CustomTreeNode(Pair['meta'], [*, [*]]), namespace={namespace!r})"
        )
        assert repr(optree.tree_map(str, Pair(1, 2), namespace=namespace)) == "Pair('1', '2')"
    finally:
        optree.unregister_pytree_node(Pair, namespace=namespace)


def test_dict_insertion_ordered(namespace):
    with optree.dict_insertion_ordered(True, namespace=namespace):
        leaves, spec = optree.tree_flatten({'b': 1, 'a': 2}, namespace=namespace)
        assert leaves == [1, 2]
        assert repr(spec) == f"PyTreeSpec({{'b': *, 'a': *}}, namespace={namespace!r})"
    leaves, spec = optree.tree_flatten({'b': 1, 'a': 2}, namespace=namespace)
    assert leaves == [2, 1]
    assert repr(spec) == "PyTreeSpec({'a': *, 'b': *})"
