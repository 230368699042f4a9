"""PyTreeSpec and the treespec_* functions with hand-written expected values: queries, children
and entries, relations, flatten_up_to, compose, transform, traverse and walk, the constructors.
No reference interpreter needed (the values were read off optree 0.20.0)."""

from __future__ import annotations

from collections import OrderedDict, namedtuple

import pytest

import optree

P = namedtuple('P', ['x', 'y'])
L = optree.treespec_leaf()
N = optree.treespec_none()
SPEC = optree.tree_structure({'a': [1, 2], 'b': (3, None)})


def test_repr_str_and_sizes():
    assert repr(SPEC) == "PyTreeSpec({'a': [*, *], 'b': (*, None)})"
    assert str(SPEC) == repr(SPEC)
    assert (SPEC.num_leaves, SPEC.num_nodes, SPEC.num_children) == (3, 7, 2)
    assert len(SPEC) == 3
    assert SPEC.type is dict
    assert SPEC.kind == optree.PyTreeKind.DICT
    assert not SPEC.is_leaf()
    assert SPEC.none_is_leaf is False
    assert SPEC.namespace == ''


def test_children_entries_and_paths():
    assert SPEC.children() == [optree.tree_structure([0, 0]), optree.tree_structure((0, None))]
    assert SPEC.child(0) == optree.tree_structure([0, 0])
    assert SPEC.entries() == ['a', 'b']
    assert SPEC.entry(1) == 'b'
    assert SPEC.paths() == [('a', 0), ('a', 1), ('b', 0)]
    with pytest.raises(IndexError, match='out of range'):
        SPEC.child(5)


def test_ordered_dict_keeps_its_key_order():
    spec = optree.tree_structure(OrderedDict(b=1, a=2))
    assert repr(spec) == "PyTreeSpec(OrderedDict({'b': *, 'a': *}))"
    assert spec.entries() == ['b', 'a']


def test_equality_and_hash_ignore_dict_insertion_order():
    other = optree.tree_structure({'b': (0, None), 'a': [0, 0]})
    assert SPEC == other
    assert hash(SPEC) == hash(other)
    assert SPEC != optree.tree_structure({'a': [0, 0], 'b': (0, 0)})


def test_prefix_relations():
    prefix = optree.tree_structure({'a': 1, 'b': 2})
    assert prefix.is_prefix(SPEC)
    assert SPEC.is_suffix(prefix)
    assert prefix < SPEC
    assert SPEC <= SPEC
    assert not SPEC < SPEC
    assert SPEC.is_prefix(SPEC, strict=False)
    assert not SPEC.is_prefix(SPEC, strict=True)


def test_unflatten():
    assert SPEC.unflatten('wxy') == {'a': ['w', 'x'], 'b': ('y', None)}


def test_flatten_up_to():
    prefix = optree.tree_structure({'a': 0, 'b': 0})
    assert prefix.flatten_up_to({'a': [1, 2], 'b': 3}) == [[1, 2], 3]
    with pytest.raises(
        ValueError, match=r'list arity mismatch; expected: 2, got: 1; list: \[1\]\.'
    ):
        optree.tree_structure([1, 2]).flatten_up_to([1])


def test_compose_and_broadcast_to_common_suffix():
    outer = optree.tree_structure([0, 0])
    assert repr(outer.compose(optree.tree_structure((0, 0)))) == 'PyTreeSpec([(*, *), (*, *)])'
    common = optree.tree_structure([1, 2]).broadcast_to_common_suffix(
        optree.tree_structure([[1, 2], 3])
    )
    assert repr(common) == 'PyTreeSpec([[*, *], *])'


def test_transform_replaces_nodes():
    spec = optree.tree_structure([1, [2]])
    transformed = spec.transform(
        lambda s: optree.treespec_tuple(s.children()) if s.type is list else s
    )
    assert repr(transformed) == 'PyTreeSpec((*, (*,)))'


def test_traverse_and_walk():
    spec = optree.tree_structure([0, (0, 0)])
    assert spec.traverse([1, 2, 3], sum, lambda x: x * 10) == 60
    walked = spec.walk([1, 2, 3], lambda t, m, c: (t.__name__, c), lambda x: x * 10)
    assert walked == ('list', (10, ('tuple', (20, 30))))


def test_leaf_and_one_level_predicates():
    assert optree.tree_structure(1).is_leaf()
    assert optree.treespec_is_strict_leaf(optree.tree_structure(1))
    assert optree.treespec_is_one_level(optree.tree_structure([1, 2]))
    assert not optree.treespec_is_one_level(optree.tree_structure([[1], 2]))
    assert repr(optree.treespec_one_level(optree.tree_structure([[1], 2]))) == 'PyTreeSpec([*, *])'


def test_none_is_leaf_and_namespace_in_repr():
    assert repr(optree.tree_structure(None, none_is_leaf=True)) == 'PyTreeSpec(*, NoneIsLeaf)'
    spec = optree.tree_structure([1], namespace='plain-treespec')
    assert repr(spec) == 'PyTreeSpec([*])'  # no custom node: the namespace plays no part
    assert spec.namespace == ''


def test_constructors():
    assert repr(L) == 'PyTreeSpec(*)'
    assert repr(N) == 'PyTreeSpec(None)'
    assert repr(optree.treespec_tuple([L, L])) == 'PyTreeSpec((*, *))'
    assert repr(optree.treespec_list([])) == 'PyTreeSpec([])'
    assert repr(optree.treespec_namedtuple(P(L, N))) == 'PyTreeSpec(P(x=*, y=None))'
    assert repr(optree.treespec_deque([L], maxlen=3)) == 'PyTreeSpec(deque([*], maxlen=3))'
    assert (
        repr(optree.treespec_ordereddict({'b': L, 'a': L}))
        == "PyTreeSpec(OrderedDict({'b': *, 'a': *}))"
    )
    assert (
        repr(optree.treespec_defaultdict(int, {'b': L}))
        == "PyTreeSpec(defaultdict(<class 'int'>, {'b': *}))"
    )
    assert repr(optree.treespec_from_collection([L, N])) == 'PyTreeSpec([*, None])'
    assert optree.treespec_dict({'b': L, 'a': N}) == optree.tree_structure({'a': None, 'b': 0})


def test_constructor_rejects_children_that_are_not_treespecs():
    with pytest.raises(ValueError, match=r'Expected a\(n\) list of PyTreeSpec\(s\)'):
        optree.treespec_from_collection([L, (N,)])
