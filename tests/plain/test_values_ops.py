"""optree.ops with hand-written expected values: flatten, unflatten, leaves, structure, paths,
accessors, map and its variants, reductions, transpose, broadcasting, partition. No reference
interpreter needed (the values were read off optree 0.20.0)."""

from __future__ import annotations

from collections import OrderedDict, defaultdict, deque, namedtuple

import pytest

import optree

Point = namedtuple('Point', ['x', 'y'])

TREE = {'b': (2, [3, 4]), 'a': 1, 'c': None}


def test_flatten_sorts_dict_keys_and_drops_none():
    leaves, spec = optree.tree_flatten(TREE)
    assert leaves == [1, 2, 3, 4]
    assert repr(spec) == "PyTreeSpec({'a': *, 'b': (*, [*, *]), 'c': None})"


def test_flatten_none_is_leaf():
    leaves, spec = optree.tree_flatten(TREE, none_is_leaf=True)
    assert leaves == [1, 2, 3, 4, None]
    assert repr(spec) == "PyTreeSpec({'a': *, 'b': (*, [*, *]), 'c': *}, NoneIsLeaf)"
    assert optree.tree_flatten(None, none_is_leaf=True) == (
        [None],
        optree.treespec_leaf(none_is_leaf=True),
    )


def test_flatten_is_leaf_stops_descent():
    leaves, spec = optree.tree_flatten(TREE, is_leaf=lambda x: isinstance(x, list))
    assert leaves == [1, 2, [3, 4]]
    assert repr(spec) == "PyTreeSpec({'a': *, 'b': (*, *), 'c': None})"


def test_unflatten_round_trip():
    leaves, spec = optree.tree_flatten(TREE)
    assert optree.tree_unflatten(spec, [10, 20, 30, 40]) == {
        'a': 10,
        'b': (20, [30, 40]),
        'c': None,
    }
    assert optree.tree_unflatten(spec, leaves) == TREE


def test_unflatten_wrong_leaf_count():
    spec = optree.tree_structure([1, 2])
    with pytest.raises(ValueError, match='Too few leaves for PyTreeSpec'):
        optree.tree_unflatten(spec, [1])
    with pytest.raises(ValueError, match='Too many leaves for PyTreeSpec'):
        optree.tree_unflatten(spec, [1, 2, 3])


def test_leaves_and_structure():
    assert optree.tree_leaves([Point(1, 2), deque([3]), OrderedDict(z=4, y=5)]) == [1, 2, 3, 4, 5]
    spec = optree.tree_structure([Point(1, 2), deque([3], maxlen=2)])
    assert repr(spec) == 'PyTreeSpec([Point(x=*, y=*), deque([*], maxlen=2)])'


def test_defaultdict_structure_keeps_factory():
    tree = defaultdict(list, {'b': 1, 'a': 2})
    leaves, spec = optree.tree_flatten(tree)
    assert leaves == [2, 1]
    assert repr(spec) == "PyTreeSpec(defaultdict(<class 'list'>, {'a': *, 'b': *}))"
    rebuilt = optree.tree_unflatten(spec, [0, 9])
    assert type(rebuilt) is defaultdict and rebuilt.default_factory is list
    assert list(rebuilt.items()) == [('b', 9), ('a', 0)]


def test_iter_is_lazy_leaves():
    iterator = optree.tree_iter({'x': [1, 2], 'y': 3})
    assert next(iterator) == 1
    assert list(iterator) == [2, 3]


def test_paths_and_flatten_with_path():
    assert optree.tree_paths(TREE) == [('a',), ('b', 0), ('b', 1, 0), ('b', 1, 1)]
    paths, leaves, spec = optree.tree_flatten_with_path([Point(1, 2)])
    assert paths == [(0, 0), (0, 1)]
    assert leaves == [1, 2]
    assert spec == optree.tree_structure([Point(0, 0)])


def test_accessors_read_the_leaves():
    tree = {'a': [1, Point(2, 3)]}
    accessors = optree.tree_accessors(tree)
    assert [a.codify('t') for a in accessors] == ["t['a'][0]", "t['a'][1].x", "t['a'][1].y"]
    assert accessors[2].path == ('a', 1, 1)
    assert type(accessors[2][2]) is optree.NamedTupleEntry
    assert [a(tree) for a in accessors] == [1, 2, 3]


def test_map_one_and_several_trees():
    assert optree.tree_map(lambda x: x * 10, TREE) == {'a': 10, 'b': (20, [30, 40]), 'c': None}
    assert optree.tree_map(lambda x, y: x + y, [1, (2,)], [10, (20,)]) == [11, (22,)]
    assert optree.tree_map(lambda x: x is None, [None, 1], none_is_leaf=True) == [True, False]


def test_map_with_path_and_in_place_variant():
    assert optree.tree_map_with_path(lambda p, x: (p, x), {'k': [5]}) == {'k': [(('k', 0), 5)]}
    seen = []
    tree = [1, (2, 3)]
    assert optree.tree_map_(seen.append, tree) is tree
    assert seen == [1, 2, 3]


def test_map_structure_mismatch_raises():
    with pytest.raises(ValueError, match=r'Expected an instance of list, got \(1, 2\)\.'):
        optree.tree_map(lambda x, y: x, [1, 2], (1, 2))


def test_reductions():
    tree = {'a': [1, 2], 'b': (3, None)}
    assert optree.tree_reduce(lambda x, y: x * y, tree) == 6
    assert optree.tree_sum(tree) == 6
    assert optree.tree_max(tree) == 3
    assert optree.tree_min(tree) == 1
    assert optree.tree_all([True, (1, 'x')]) is True
    assert optree.tree_any([0, (False, None)]) is False
    assert optree.tree_sum([], start=7) == 7


def test_replace_nones():
    assert optree.tree_replace_nones(0, {'a': None, 'b': [None, 1]}) == {'a': 0, 'b': [0, 1]}


def test_transpose():
    outer = optree.tree_structure([0, 0])
    inner = optree.tree_structure((0, 0))
    assert optree.tree_transpose(outer, inner, [(1, 2), (3, 4)]) == ([1, 3], [2, 4])


def test_broadcast_prefix_and_common():
    assert optree.tree_broadcast_prefix([1, 2], [[3, 4], 5]) == [[1, 1], 2]
    assert optree.broadcast_prefix([1, 2], [[3, 4], 5]) == [1, 1, 2]
    assert optree.broadcast_common([1, 2], [[3, 4], 5]) == ([1, 1, 2], [3, 4, 5])
    assert optree.tree_broadcast_map(lambda x, y: x + y, [1, 2], [[3, 4], 5]) == [[4, 5], 7]


def test_flatten_one_level():
    out = optree.tree_flatten_one_level({'b': 1, 'a': [2]})
    assert out.children == [[2], 1]
    assert out.metadata == ['a', 'b']
    assert out.entries == ('a', 'b')
    assert out.unflatten_func(out.metadata, [7, 8]) == {'a': 7, 'b': 8}
    with pytest.raises(ValueError, match='Cannot flatten leaf-type'):
        optree.tree_flatten_one_level(1)


def test_is_leaf_and_all_leaves():
    assert optree.tree_is_leaf(1)
    assert not optree.tree_is_leaf([1])
    assert optree.tree_is_leaf(None, none_is_leaf=True)
    assert optree.all_leaves([1, 'a', 2.0])
    assert not optree.all_leaves([1, [2]])


def test_partition():
    left, right = optree.tree_partition(lambda x: x > 1, [1, (2, 3)])
    assert left == [None, (2, 3)]
    assert right == [1, (None, None)]


def test_prefix_errors_name_the_mismatch():
    errors = optree.prefix_errors([1, 2], [1, 2, 3])
    assert len(errors) == 1
    with pytest.raises(ValueError, match='different numbers of pytree children at key path'):
        raise errors[0]('in_axes')
