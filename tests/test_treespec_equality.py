"""Treespec comparisons against optree 0.20.0: the relations (``==``, ``!=``, ``<``, ``<=``,
``>``, ``>=``, is_prefix / is_suffix) across the zoo's plain trees, equality of treespecs made four
ways (flattened, constructed, unpickled, transformed), custom metadata equality, comparison with
other types."""

from __future__ import annotations

import pytest

from harness.zoo import ZOO, ZooEntry

_PLAIN = [entry for entry in ZOO if not entry.setup and not entry.id.startswith('wide')]


def _matrix_setup(kwargs: str, entries: list[ZooEntry] = _PLAIN) -> str:
    items = ',\n    '.join(f'({e.id!r}, {e.expr})' for e in entries)
    return (
        f'TREES = [\n    {items},\n]\n'
        f'SPECS = [optree.tree_structure(t, {kwargs}) for _, t in TREES]\n'
    )


@pytest.mark.parametrize('kwargs', ['', 'none_is_leaf=True'])
@pytest.mark.parametrize(
    'relation',
    [
        'a == b',
        'a != b',
        'a < b',
        'a <= b',
        'a > b',
        'a >= b',
        'a.is_prefix(b)',
        'a.is_prefix(b, strict=True)',
        'a.is_suffix(b)',
        'a.is_suffix(b, strict=True)',
        '(a == b) <= (hash(a) == hash(b))',
    ],
)
def test_treespec_relations_matrix(differential, kwargs, relation):
    setup = _matrix_setup(kwargs)
    differential.check(
        setup,
        [f'[[int({relation}) for b in SPECS] for a in SPECS]'],
    )
    ours, _ = differential.outcomes(setup, f'all(all({relation} for b in SPECS) for a in SPECS)')
    if relation.startswith('(a == b) <='):
        assert ours['ok'] and ours['repr'] == 'True', f'equal specs must hash equal: {ours}'


# Treespecs of the same trees made four ways: flattened and unpickled ones carry a packed
# shape that equality compares first, the others do not; all must compare alike.
_ROUTES = {
    'flatten': 'SPECS',
    'pickle': '[pickle.loads(pickle.dumps(s)) for s in SPECS]',
    'transform': '[s.transform() for s in SPECS]',
    'child': '[optree.treespec_tuple([s]).children()[0] for s in SPECS]',
}


@pytest.mark.parametrize('left', list(_ROUTES))
def test_treespec_equality_across_constructions(differential, left):
    picklable = [entry for entry in _PLAIN if entry.id != 'float-info']  # sys.float_info's type
    setup = _matrix_setup('', picklable) + ''.join(
        f'{name.upper()} = {expr}\n' for name, expr in _ROUTES.items()
    )
    exprs = [
        f'[[int(a == b) for b in {right.upper()}] for a in {left.upper()}]' for right in _ROUTES
    ]
    differential.check(setup, exprs)
    first, _ = differential.outcomes(setup, exprs[0])
    for expr in exprs[1:]:
        ours, _ = differential.outcomes(setup, expr)
        assert ours['repr'] == first['repr'], f'{expr} differs from flattened treespecs'


# Custom metadata compares as ==: nested tuples item by item, str by content, NaN unequal to
# another NaN, str and tuple subclasses by their own __eq__, nesting deeper than any shortcut.
METADATA_SETUP = """
class Tagged:
    def __init__(self, value, tag):
        self.value, self.tag = value, tag


optree.register_pytree_node(
    Tagged, lambda t: ((t.value,), t.tag), lambda tag, c: Tagged(c[0], tag), namespace='meta'
)


class AlwaysEqualStr(str):
    def __eq__(self, other):
        return True

    __hash__ = str.__hash__


class Pairish(tuple):
    pass


def nested(depth, leaf):
    for _ in range(depth):
        leaf = (leaf,)
    return leaf


def same(tag_a, tag_b):
    return optree.tree_structure(Tagged(1, tag_a), namespace='meta') == optree.tree_structure(
        Tagged(1, tag_b), namespace='meta'
    )
"""

METADATA_EXPRS = [
    "same(('a', 1), ('a', 1))",
    "same(('a', 1), ('a', 2))",
    "same(('a', ('b', 'c')), ('a', ('b', ''.join('c'))))",
    "same('x' * 3, ''.join(['xx', 'x']))",
    "same('abc', 'abd')",
    "same('é', 'e')",
    "same((float('nan'),), (float('nan'),))",
    'n = float("nan")\nresult = same((n,), (n,))',
    "same(('a', 1), ('a', 1, 2))",
    "same(AlwaysEqualStr('x'), 'y')",
    "same(('k', AlwaysEqualStr('x')), ('k', 'y'))",
    "same(Pairish(('a', 1)), ('a', 1))",
    "same(nested(20, 'leaf'), nested(20, ''.join('leaf')))",
    "same(nested(20, 'leaf'), nested(20, 'leaF'))",
    "same(nested(20, float('nan')), nested(20, float('nan')))",
    'same((1, 2.0), (1.0, 2))',
]


def test_custom_metadata_equality(differential):
    differential.check(METADATA_SETUP, METADATA_EXPRS)


def test_treespec_compare_with_other_types(differential):
    differential.check(
        '',
        [
            'optree.tree_structure([1]) == [1]',
            'optree.tree_structure([1]) != None',
            'optree.tree_structure([1]).__eq__(1)',
            'optree.tree_structure([1]).__lt__(1)',
            'optree.tree_structure([1]) < 1',
            'optree.tree_structure(None) == optree.tree_structure(None, none_is_leaf=True)',
            "optree.tree_structure(1) == optree.tree_structure(1, namespace='zoo')",
            "optree.tree_structure([1]) == optree.tree_structure([1], namespace='zoo')",
            'optree.tree_structure({"a": 1}) == optree.tree_structure(OrderedDict(a=1))',
            'optree.tree_structure(defaultdict(int, a=1)) == '
            'optree.tree_structure(defaultdict(list, a=1))',
            'optree.tree_structure(deque([1])) == optree.tree_structure(deque([1], maxlen=1))',
            'optree.tree_structure(Point(1, 2)) == optree.tree_structure((1, 2))',
        ],
    )
