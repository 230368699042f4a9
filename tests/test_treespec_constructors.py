"""The treespec constructors (treespec_leaf, treespec_none, treespec_tuple / list / dict /
ordereddict / defaultdict / deque / namedtuple / structseq, treespec_from_collection) with and
without a namespace, their errors, against optree 0.20.0."""

from __future__ import annotations

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
