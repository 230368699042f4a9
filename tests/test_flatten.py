"""Differential tests over the hand-written zoo of trees."""

from __future__ import annotations

import pytest
from harness.properties import MESSAGE_GROUPS, PROPERTY_GROUPS, tree_setup
from harness.zoo import VARIANTS, ZOO, ZOO_BY_ID, ZOO_NAMESPACE, ZooEntry

ZOO_IDS = [entry.id for entry in ZOO]


@pytest.mark.parametrize('group', list(PROPERTY_GROUPS))
@pytest.mark.parametrize('variant', list(VARIANTS))
@pytest.mark.parametrize('entry_id', ZOO_IDS)
def test_zoo_properties(differential, entry_id, variant, group):
    entry = ZOO_BY_ID[entry_id]
    setup = tree_setup(entry.setup, entry.expr, VARIANTS[variant])
    differential.check(setup, PROPERTY_GROUPS[group], check_message=group in MESSAGE_GROUPS)


def test_zoo_setups_are_sound(differential):
    """Every zoo tree builds and flattens on the reference (guards the zoo itself)."""
    for entry in ZOO:
        setup = tree_setup(entry.setup, entry.expr, '')
        _, theirs = differential.check(setup, ['spec.num_leaves'])[0]
        assert theirs['ok'], f'{entry.id}: {theirs}'


def test_custom_nodes_are_leaves_outside_their_namespace(differential):
    for entry in ZOO:
        if not entry.has_custom_nodes:
            continue
        setup = tree_setup(entry.setup, entry.expr, '')
        ours, _ = differential.check(
            setup,
            [
                'optree.tree_structure(tree)',
                f'optree.tree_structure(tree, namespace={ZOO_NAMESPACE!r})',
                "optree.tree_structure(tree, namespace='some-other-namespace')",
            ],
        )[0]
        assert ours['ok']


# ---------------------------------------------------------------------------------------------
# Cross-tree comparisons of treespecs
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Deep (but legal) nesting
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    'builder',
    [
        'lambda acc: [acc]',
        'lambda acc: (acc, 1)',
        "lambda acc: {'k': acc}",
        'lambda acc: Point(acc, None)',
        'lambda acc: deque([acc])',
    ],
)
def test_deep_legal_nesting(differential, builder):
    depth = 'optree.MAX_RECURSION_DEPTH - 100'
    setup = (
        f'f = {builder}\n'
        'tree = 0\n'
        f'for _ in range({depth}):\n'
        '    tree = f(tree)\n'
        'leaves, spec = optree.tree_flatten(tree)\n'
    )
    differential.check(
        setup,
        [
            'leaves',
            '(spec.num_leaves, spec.num_nodes, spec.num_children, spec.kind)',
            'optree.tree_leaves(tree)',
            'len(optree.tree_paths(tree)[0])',
            'optree.tree_structure(optree.tree_map(lambda x: x + 1, tree)) == spec',
            'optree.tree_leaves(optree.tree_unflatten(spec, [42]))',
            'spec == optree.tree_structure(tree)',
            'hash(spec) == hash(optree.tree_structure(tree))',
            'pickle.loads(pickle.dumps(spec)) == spec',
            'spec.child(0).num_nodes',
            'optree.tree_structure(optree.tree_map(lambda x: [x], tree)).num_nodes',
        ],
    )


# ---------------------------------------------------------------------------------------------
# dict_insertion_ordered
# ---------------------------------------------------------------------------------------------

_DICT_TREES = [
    entry
    for entry in ZOO
    if any(token in entry.expr for token in ('{', 'dict(', 'OrderedDict'))
    and not entry.id.startswith('wide')
]


@pytest.mark.parametrize('entry_id', [entry.id for entry in _DICT_TREES])
def test_dict_insertion_ordered(differential, entry_id):
    entry = ZOO_BY_ID[entry_id]
    setup = (
        f'{entry.setup}\n'
        f'tree = {entry.expr}\n'
        "IO = 'zoo-insertion-ordered'\n"
        'with optree.dict_insertion_ordered(True, namespace=IO):\n'
        '    leaves, spec = optree.tree_flatten(tree, namespace=IO)\n'
        '    inside = (\n'
        '        leaves, spec, optree.tree_paths(tree, namespace=IO),\n'
        '        optree.tree_unflatten(spec, leaves),\n'
        "        optree.tree_flatten(tree), optree.tree_flatten(tree, namespace='other'),\n"
        '        optree.tree_map(repr, tree, namespace=IO),\n'
        '    )\n'
        'after = optree.tree_flatten(tree, namespace=IO)\n'
    )
    differential.check(
        setup,
        [
            'inside',
            'after',
            'spec.unflatten(leaves)',
            'list(spec.unflatten(leaves).keys()) if isinstance(tree, dict) else None',
            'spec == after[1]',
            '_pickle_all(spec)',
            '[s.unflatten(leaves) for s in _pickle_all(spec)]',
            'spec.entries()',
            'spec.paths()',
            'with optree.dict_insertion_ordered(True, namespace=IO):\n'
            '    result = optree.tree_flatten_one_level(tree, namespace=IO)\n',
            f'with optree.dict_insertion_ordered(True, namespace=IO):\n'
            f'    result = optree.tree_flatten(tree, namespace={ZOO_NAMESPACE!r})\n',
        ],
    )


def test_dict_insertion_ordered_restores_and_nests(differential):
    setup = "tree = {'b': 1, 'a': 2}\nIO = 'zoo-io-nesting'\n"
    differential.check(
        setup,
        [
            'with optree.dict_insertion_ordered(True, namespace=IO):\n'
            '    with optree.dict_insertion_ordered(False, namespace=IO):\n'
            '        a = optree.tree_leaves(tree, namespace=IO)\n'
            '    b = optree.tree_leaves(tree, namespace=IO)\n'
            'result = (a, b, optree.tree_leaves(tree, namespace=IO))\n',
            'try:\n'
            '    with optree.dict_insertion_ordered(True, namespace=IO):\n'
            "        raise KeyError('boom')\n"
            'except KeyError:\n'
            '    pass\n'
            'result = optree.tree_leaves(tree, namespace=IO)\n',
            "optree.dict_insertion_ordered(True, namespace='').__enter__()",
            'optree.dict_insertion_ordered(True, namespace=1).__enter__()',
        ],
    )


# ---------------------------------------------------------------------------------------------
# treespec constructors
# ---------------------------------------------------------------------------------------------

CONSTRUCTOR_EXPRS = [
    'optree.treespec_leaf()',
    'optree.treespec_leaf(none_is_leaf=True)',
    'optree.treespec_none()',
    'optree.treespec_none(none_is_leaf=True)',
    'optree.treespec_tuple()',
    'optree.treespec_tuple([L, N, L])',
    'optree.treespec_tuple([L, N], none_is_leaf=True)',
    'optree.treespec_tuple((L, optree.treespec_tuple([L])))',
    'optree.treespec_list([L, optree.treespec_list()])',
    "optree.treespec_dict({'b': L, 'a': N})",
    "optree.treespec_dict([('b', L), ('a', L)])",
    'optree.treespec_dict(b=L, a=N)',
    "optree.treespec_dict({1: L, 'x': L})",
    "optree.treespec_dict({'a': L}, b=L)",
    "optree.treespec_ordereddict({'b': L, 'a': N})",
    'optree.treespec_ordereddict(b=L, a=L)',
    "optree.treespec_defaultdict(int, {'b': L, 'a': L})",
    'optree.treespec_defaultdict()',
    'optree.treespec_defaultdict(list, b=L)',
    'optree.treespec_deque([L, L])',
    'optree.treespec_deque([L], maxlen=3)',
    'optree.treespec_deque()',
    'optree.treespec_namedtuple(Point(L, N))',
    'optree.treespec_namedtuple(Pair(L, L))',
    'optree.treespec_structseq(os.terminal_size((L, L)))',
    'optree.treespec_structseq(time.gmtime(0))',
    'optree.treespec_from_collection(None)',
    'optree.treespec_from_collection(1)',
    'optree.treespec_from_collection([L, (N,), {"k": L}])',
    'optree.treespec_from_collection(deque([L], maxlen=2))',
    'optree.treespec_from_collection(Point(L, L))',
    'optree.treespec_from_collection(OrderedDict(z=L, a=L))',
    'optree.treespec_from_collection(defaultdict(dict, z=L))',
    'optree.treespec_tuple([L, N]) == optree.tree_structure((1, None))',
    "optree.treespec_dict({'b': L, 'a': L}) == optree.tree_structure({'a': 1, 'b': 2})",
    "optree.treespec_dict({'b': L, 'a': L}).unflatten([1, 2])",
    "optree.treespec_ordereddict({'b': L, 'a': L}).unflatten([1, 2])",
    'optree.treespec_deque([L], maxlen=3).unflatten([7])',
    'optree.treespec_namedtuple(Point(L, L)).unflatten(["x", "y"])',
    'optree.treespec_structseq(os.terminal_size((L, L))).unflatten([3, 4])',
    "optree.treespec_tuple([L], namespace='zoo')",
    'optree.treespec_list([optree.treespec_leaf(none_is_leaf=True)], '
    'none_is_leaf=True).none_is_leaf',
    # Errors.
    'optree.treespec_tuple([1])',
    'optree.treespec_tuple([L, optree.treespec_leaf(none_is_leaf=True)])',
    'optree.treespec_list([optree.treespec_leaf(none_is_leaf=True)])',
    'optree.treespec_namedtuple((L, L))',
    'optree.treespec_structseq((L, L))',
    'optree.treespec_structseq(Point(L, L))',
    "optree.treespec_dict({'a': 1})",
    'optree.treespec_deque([L], maxlen=-1)',
]


def test_treespec_constructors(differential):
    setup = 'L = optree.treespec_leaf()\nN = optree.treespec_none()\n'
    differential.check(setup, CONSTRUCTOR_EXPRS)


def test_treespec_constructors_with_custom_namespace(differential):
    from harness.zoo import MYNODE_WITH_ENTRIES

    setup = (
        MYNODE_WITH_ENTRIES
        + 'L = optree.treespec_leaf()\n'
        + "inner = optree.tree_structure(MyNode(1, 2), namespace='zoo')\n"
    )
    differential.check(
        setup,
        [
            'inner',
            'optree.treespec_tuple([inner, L])',
            "optree.treespec_tuple([inner, L], namespace='zoo')",
            "optree.treespec_list([inner], namespace='other')",
            "optree.treespec_dict(a=inner, namespace='zoo').namespace",
            "optree.treespec_tuple([L, L], namespace='zoo').namespace",
            'optree.treespec_tuple([inner, inner]).unflatten([1, 2, 3, 4])',
            "optree.treespec_from_collection(MyNode(L, L), namespace='zoo')",
        ],
    )


# ---------------------------------------------------------------------------------------------
# Registry-sensitive helpers that do not depend on a tree
# ---------------------------------------------------------------------------------------------


def test_introspection_helpers(differential):
    differential.check(
        '',
        [
            '[optree.is_namedtuple(x) for x in (Point, Point(1, 2), (1, 2), time.gmtime(0), Pair)]',
            '[optree.is_namedtuple_class(x) for x in (Point, Point(1, 2), tuple, Pair, '
            'type(sys.float_info))]',
            '[optree.is_namedtuple_instance(x) for x in (Point, Point(1, 2), (1, 2), Pair(1))]',
            'optree.namedtuple_fields(Point)',
            'optree.namedtuple_fields(Pair(1))',
            'optree.namedtuple_fields((1, 2))',
            '[optree.is_structseq(x) for x in (time.struct_time, time.gmtime(0), Point, (1,))]',
            '[optree.is_structseq_class(x) for x in (time.struct_time, type(sys.float_info), '
            'tuple, Point)]',
            '[optree.is_structseq_instance(x) for x in (time.struct_time, sys.float_info, (1,))]',
            'optree.structseq_fields(time.struct_time)',
            'optree.structseq_fields(sys.float_info)',
            'optree.structseq_fields(os.stat_result(tuple(range(10))))',
            'optree.structseq_fields(Point)',
            'optree.MAX_RECURSION_DEPTH',
            '(optree.NONE_IS_LEAF, optree.NONE_IS_NODE)',
            'list(optree.PyTreeKind)',
            '[int(k) for k in optree.PyTreeKind]',
            'optree.PyTreeKind.NUM_KINDS',
        ],
    )
