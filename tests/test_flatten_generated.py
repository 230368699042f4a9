"""Differential tests over hypothesis-generated trees.

Trees are generated as *source text* (so both interpreters build identical objects): nested
tuples, lists, dicts, OrderedDicts, defaultdicts, deques, namedtuples, structseqs and None with
int / float / str / bool leaves.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.properties import QUICK_EXPRS, tree_setup

LEAVES = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6).map(repr),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.text(alphabet='abcxyz_', max_size=3).map(repr),
    st.booleans().map(repr),
    st.just('None'),
)

SORTABLE_KEYS = st.sampled_from(['a', 'b', 'c', 'd', 'e', 'f'])
INT_KEYS = st.integers(min_value=-3, max_value=5)
MIXED_KEYS = st.one_of(SORTABLE_KEYS, INT_KEYS, st.just(None), st.tuples(INT_KEYS))
KEYS = st.one_of(SORTABLE_KEYS, INT_KEYS, MIXED_KEYS)


def _seq(children: list[str]) -> str:
    return ', '.join(children)


def _items(pairs: dict) -> str:
    return ', '.join(f'{key!r}: {value}' for key, value in pairs.items())


def _extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    small = st.lists(children, max_size=4)
    return st.one_of(
        small.map(lambda xs: f'({_seq(xs)}{"," if len(xs) == 1 else ""})'),
        small.map(lambda xs: f'[{_seq(xs)}]'),
        st.dictionaries(SORTABLE_KEYS, children, max_size=4).map(lambda d: f'{{{_items(d)}}}'),
        st.dictionaries(MIXED_KEYS, children, max_size=3).map(lambda d: f'{{{_items(d)}}}'),
        st.dictionaries(KEYS, children, max_size=4).map(lambda d: f'OrderedDict({{{_items(d)}}})'),
        st.tuples(
            st.sampled_from(['list', 'int', 'None']), st.dictionaries(KEYS, children, max_size=3)
        ).map(
            lambda t: f'defaultdict({t[0]}, {{{_items(t[1])}}})',
        ),
        small.map(lambda xs: f'deque([{_seq(xs)}])'),
        st.tuples(small, st.integers(min_value=0, max_value=3)).map(
            lambda t: f'deque([{_seq(t[0])}], maxlen={len(t[0]) + t[1]})',
        ),
        st.tuples(children, children).map(lambda t: f'Point({t[0]}, {t[1]})'),
        st.tuples(children, children, children).map(lambda t: f'Triple({t[0]}, {t[1]}, {t[2]})'),
        st.tuples(children, children).map(lambda t: f'Pair({t[0]}, second={t[1]})'),
        st.tuples(children, children).map(lambda t: f'os.terminal_size(({t[0]}, {t[1]}))'),
        st.just('Empty()'),
    )


TREES = st.recursive(LEAVES, _extend, max_leaves=16)

KWARGS = st.sampled_from(
    [
        '',
        'none_is_leaf=True',
        'is_leaf=lambda x: isinstance(x, tuple) and len(x) == 1',
        "is_leaf=lambda x: type(x) is list and not x, none_is_leaf=True, namespace='hyp'",
    ],
)


@given(tree=TREES, kwargs=KWARGS)
def test_generated_tree_properties(differential, tree, kwargs):
    differential.check(tree_setup('', tree, kwargs), QUICK_EXPRS)


@given(tree=TREES)
def test_generated_tree_dict_insertion_ordered(differential, tree):
    setup = (
        f'tree = {tree}\n'
        "with optree.dict_insertion_ordered(True, namespace='hyp-io'):\n"
        "    leaves, spec = optree.tree_flatten(tree, namespace='hyp-io')\n"
        "    paths = optree.tree_paths(tree, namespace='hyp-io')\n"
    )
    differential.check(
        setup,
        [
            '(leaves, spec, paths)',
            'spec.unflatten(leaves)',
            '_pickle_all(spec)[-1] == spec',
            'spec.__getstate__()',
            "spec == optree.tree_structure(tree, namespace='hyp-io')",
        ],
    )


@given(left=TREES, right=TREES, none_is_leaf=st.booleans())
def test_generated_tree_pairs(differential, left, right, none_is_leaf):
    setup = (
        f'left = {left}\n'
        f'right = {right}\n'
        f'a = optree.tree_structure(left, none_is_leaf={none_is_leaf})\n'
        f'b = optree.tree_structure(right, none_is_leaf={none_is_leaf})\n'
    )
    differential.check(
        setup,
        [
            '(a == b, a != b, a < b, a <= b, a > b, a >= b)',
            '(a == b) <= (hash(a) == hash(b))',
            '(a.is_prefix(b), a.is_prefix(b, strict=True), a.is_suffix(b), b.is_suffix(a, '
            'strict=True))',
            'a.flatten_up_to(right)',
            'b.flatten_up_to(left)',
            'a.broadcast_to_common_suffix(b)',
            f'optree.tree_map(lambda x, y: (x, y), left, right, none_is_leaf={none_is_leaf})',
            f'optree.tree_broadcast_prefix(left, right, none_is_leaf={none_is_leaf})',
            'a.compose(b)',
            'a.compose(b).num_leaves == a.num_leaves * b.num_leaves',
            'a.compose(b).unflatten(range(a.num_leaves * b.num_leaves))',
        ],
    )


@pytest.mark.parametrize('protocol', [0, 1, 2, 3, 4, 5])
@settings(max_examples=20)
@given(tree=TREES)
def test_generated_pickle_round_trip(differential, tree, protocol):
    setup = f'tree = {tree}\nspec = optree.tree_structure(tree)\n'
    differential.check(
        setup,
        [
            f'pickle.loads(pickle.dumps(spec, protocol={protocol}))',
            f'pickle.loads(pickle.dumps(spec, protocol={protocol})) == spec',
            'spec.__getstate__()',
            'pickle.loads(pickle.dumps((spec, spec), '
            f'protocol={protocol}))[1].unflatten(optree.tree_leaves(tree))',
        ],
    )
