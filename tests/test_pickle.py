"""Pickles cross-load with optree 0.20.0, both ways.

Treespecs pickle to optree 0.20.0's state layout: the treespec pickled by one package loads in the
other and equals (repr, ``==``, ``unflatten``, state) the treespec that package builds itself.
Pickled bytes travel between the two interpreters as ``repr`` text.
"""

from __future__ import annotations

import ast
import pickle
import textwrap

import pytest

from harness import reference
from harness.zoo import MYBAG_NO_ENTRIES, ZOO, ZOO_NAMESPACE

# How the treespec of each zoo tree is built, on both sides: flatten keyword arguments, or a
# dict_insertion_ordered context (dicts keep their insertion order).
VARIANTS = {
    'default': 'leaves, spec = optree.tree_flatten(tree)\n',
    'none_is_leaf': 'leaves, spec = optree.tree_flatten(tree, none_is_leaf=True)\n',
    'namespace': f'leaves, spec = optree.tree_flatten(tree, namespace={ZOO_NAMESPACE!r})\n',
    'none_is_leaf+namespace': (
        'leaves, spec = optree.tree_flatten(tree, none_is_leaf=True, '
        f'namespace={ZOO_NAMESPACE!r})\n'
    ),
    'insertion_ordered': (
        f'with optree.dict_insertion_ordered(True, namespace={ZOO_NAMESPACE!r}):\n'
        f'    leaves, spec = optree.tree_flatten(tree, namespace={ZOO_NAMESPACE!r})\n'
    ),
}

DUMPS = '[pickle.dumps(spec, protocol=p) for p in range(pickle.HIGHEST_PROTOCOL + 1)]'

# Evaluated on both sides with the same DATA (pickles made by one of them).
LOADS = [
    '[pickle.loads(d) == spec for d in DATA]',
    '[repr(pickle.loads(d)) for d in DATA]',
    '[pickle.loads(d).unflatten(leaves) for d in DATA]',
    '[pickle.loads(d).__getstate__() == spec.__getstate__() for d in DATA]',
    '[hash(pickle.loads(d)) == hash(spec) for d in DATA]',
    '[(s.namespace, s.none_is_leaf, s.num_leaves, s.num_nodes, s.type) '
    'for s in map(pickle.loads, DATA)]',
]


def _pickles(outcome: dict, side: str) -> list[bytes]:
    assert outcome['ok'], f'{side} could not pickle the treespec: {outcome}'
    data = ast.literal_eval(outcome['repr'])
    assert isinstance(data, list) and all(isinstance(d, bytes) for d in data)
    return data


@pytest.mark.parametrize('variant', list(VARIANTS))
@pytest.mark.parametrize('entry', ZOO, ids=[entry.id for entry in ZOO])
def test_zoo_pickles_cross_load(differential, reference_server, entry, variant):
    setup = f'{entry.setup}\ntree = {entry.expr}\n{VARIANTS[variant]}'
    # The state itself is the same, object for object (so the same repr).
    differential.check(setup, ['spec.__getstate__()', 'spec.__reduce__()[1:]'])

    theirs_outcome = reference_server.evaluate(setup, DUMPS)
    ours_outcome = reference.evaluate(setup, DUMPS)
    if not theirs_outcome['ok']:  # a class pickle cannot find (sys.float_info's): both fail
        assert reference.compare_outcomes(ours_outcome, theirs_outcome) is None, ours_outcome
        return
    theirs = _pickles(theirs_outcome, 'optree 0.20.0')
    ours = _pickles(ours_outcome, 'ours')
    for maker, data in (('optree 0.20.0', theirs), ('ours', ours)):
        outcomes = differential.check(f'{setup}DATA = {data!r}\n', LOADS)
        for expr, (mine, _) in zip(
            LOADS[:1] + LOADS[3:5], outcomes[:1] + outcomes[3:5], strict=True
        ):
            assert mine['repr'] == repr([True] * len(data)), (maker, expr, mine)


def test_seven_tuple_node_states_load_alike(differential):
    # Node states without their eighth item (original keys) load in both, as insertion order.
    setup = textwrap.dedent(
        """
        tree = {'b': [1, {'y': 2, 'x': 3}], 'a': defaultdict(int, {'d': 4, 'c': 5})}
        leaves, spec = optree.tree_flatten(tree)
        nodes, none_is_leaf, namespace = spec.__getstate__()
        state = (tuple(node[:7] for node in nodes), none_is_leaf, namespace)
        loaded = PyTreeSpec.__new__(PyTreeSpec)
        loaded.__setstate__(state)
        """,
    )
    differential.check(
        setup,
        [
            'loaded',
            'loaded == spec',
            'loaded.unflatten(leaves)',
            'list(loaded.unflatten(leaves))',
            'loaded.__getstate__()[0][0]',
            '[node[:7] for node in loaded.__getstate__()[0]]',
        ],
    )


def test_seven_tuple_node_states_pickle_again():
    # Intended difference: optree 0.20.0 saves None as the original keys of a dict node it loaded
    # from a 7-tuple, and then refuses that state ("a dict node is missing its original keys").
    # Ours saves the keys in their (unrecorded, so sorted) order, so the treespec loads again.
    import optree

    spec = optree.tree_structure({'b': 1, 'a': {'y': 2, 'x': 3}})
    nodes, none_is_leaf, namespace = spec.__getstate__()
    loaded = optree.PyTreeSpec.__new__(optree.PyTreeSpec)
    loaded.__setstate__((tuple(node[:7] for node in nodes), none_is_leaf, namespace))
    assert [node[7] for node in loaded.__getstate__()[0] if node[0] == optree.PyTreeKind.DICT] == [
        {'x': None, 'y': None},
        {'a': None, 'b': None},
    ]
    again = pickle.loads(pickle.dumps(loaded))
    assert again == spec
    assert list(again.unflatten([1, 2, 3])) == ['a', 'b']


def test_lists_for_tuples_in_a_state_load_alike(differential):
    # optree 0.20.0 takes a sequence where its own state has a tuple.
    setup = textwrap.dedent(
        """
        tree = [defaultdict(list, {'b': 1, 'a': 2}), (3, None)]
        leaves, spec = optree.tree_flatten(tree)
        nodes, none_is_leaf, namespace = spec.__getstate__()


        def listify(node):
            node = list(node)
            if node[0] == PyTreeKind.DEFAULTDICT:
                node[2] = list(node[2])
            return node


        state = [[listify(node) for node in nodes], none_is_leaf, namespace]
        loaded = PyTreeSpec.__new__(PyTreeSpec)
        loaded.__setstate__(state)
        """,
    )
    differential.check(setup, ['loaded', 'loaded == spec', 'loaded.unflatten(leaves)'])


def test_every_protocol_reduces_through_newobj(differential):
    # No two nodes with equal states (which ours shares, and pickle then writes once): the very
    # same bytes at every protocol.
    setup = "spec = optree.tree_structure({'a': [1, None], 'b': deque([()], maxlen=3)})\n"
    differential.check(
        setup,
        [
            'spec.__reduce__()',
            '[spec.__reduce_ex__(p) for p in range(pickle.HIGHEST_PROTOCOL + 1)]',
            '[pickle.dumps(spec, protocol=p) for p in range(pickle.HIGHEST_PROTOCOL + 1)]',
        ],
    )


def test_unregistered_custom_type_in_a_pickle_from_the_other_side(
    differential,
    reference_server,
    namespace,
):
    make = textwrap.dedent(
        f"""
        class Node2:
            def __init__(self, *children):
                self.children = children


        optree.register_pytree_node(
            Node2, lambda n: (n.children, None), lambda _, c: Node2(*c), namespace={namespace!r}
        )
        spec = optree.tree_structure([Node2(1, 2)], namespace={namespace!r})
        """,
    )
    theirs = _pickles(reference_server.evaluate(make, '[pickle.dumps(spec)]'), 'optree 0.20.0')
    setup = f'class Node2:\n    pass\n\n\nDATA = {theirs!r}\n'
    differential.check(setup, ['pickle.loads(DATA[0])'], check_message=True)


# Malformed states from the layout's own rules, each rejected by both with a RuntimeError.
LEAF = '(1, 0, None, None, None, 1, 1, None)'
MALFORMED_STATES = {
    'not-a-3-tuple': f'(({LEAF},), False)',
    'node-7-items-short': '(((1, 0, None, None, None, 1),), False, "")',
    'kind-out-of-range': '(((12, 0, None, None, None, 0, 1, None),), False, "")',
    'negative-arity': '(((3, -1, None, None, None, 0, 1, None),), False, "")',
    'dict-without-original-keys': (
        f"(({LEAF}, {LEAF}, (5, 2, ['a', 'b'], None, None, 2, 3, None)), False, '')"
    ),
    'leaf-with-original-keys': "(((1, 0, None, None, None, 1, 1, {'a': None}),), False, '')",
    'negative-leaf-count': '(((1, 0, None, None, None, -1, 1, None),), False, "")',
    'zero-node-count': '(((1, 0, None, None, None, 1, 0, None),), False, "")',
    'leaf-with-data': "(((1, 0, 'x', None, None, 1, 1, None),), False, '')",
    'leaf-with-children': f'(({LEAF}, (1, 1, None, None, None, 1, 2, None)), False, "")',
    'none-node-with-none-is-leaf': '(((2, 0, None, None, None, 0, 1, None),), True, "")',
    'tuple-with-data': f"(({LEAF}, {LEAF}, (3, 2, 'x', None, None, 2, 3, None)), False, '')",
    'too-few-keys': (
        f"(({LEAF}, {LEAF}, (5, 2, ['a'], None, None, 2, 3, {{'a': None, 'b': None}})), False, '')"
    ),
    'repeated-keys': (
        f"(({LEAF}, {LEAF}, (5, 2, ['a', 'a'], None, None, 2, 3, {{'a': None, 'b': None}})), "
        "False, '')"
    ),
    'unhashable-keys': (
        f"(({LEAF}, {LEAF}, (5, 2, [[], []], None, None, 2, 3, {{'a': None, 'b': None}})), "
        "False, '')"
    ),
    'other-original-keys': (
        f"(({LEAF}, {LEAF}, (5, 2, ['a', 'b'], None, None, 2, 3, {{'a': None, 'c': None}})), "
        "False, '')"
    ),
    'fewer-original-keys': (
        f"(({LEAF}, {LEAF}, (5, 2, ['a', 'b'], None, None, 2, 3, {{'a': None}})), False, '')"
    ),
    'namedtuple-data-not-a-namedtuple': '(((6, 0, int, None, None, 0, 1, None),), False, "")',
    'namedtuple-arity': f'(({LEAF}, (6, 1, Point, None, None, 1, 2, None)), False, "")',
    'structseq-data-not-a-structseq': '(((10, 0, int, None, None, 0, 1, None),), False, "")',
    'structseq-arity': f'(({LEAF}, (10, 1, time.struct_time, None, None, 1, 2, None)), False, "")',
    'defaultdict-3-tuple': (
        f"(({LEAF}, {LEAF}, (8, 2, (int, ['a', 'b'], 0), None, None, 2, 3, "
        "{'a': None, 'b': None})), False, '')"
    ),
    'defaultdict-factory': (
        f"(({LEAF}, {LEAF}, (8, 2, (42, ['a', 'b']), None, None, 2, 3, "
        "{'a': None, 'b': None})), False, '')"
    ),
    'deque-maxlen-str': "(((9, 0, 'x', None, None, 0, 1, None),), False, '')",
    'deque-maxlen-below-arity': f'(({LEAF}, {LEAF}, (9, 2, 1, None, None, 2, 3, None)), False, "")',
    'tuple-with-entries': (
        f"(({LEAF}, {LEAF}, (3, 2, None, ('a', 'b'), None, 2, 3, None)), False, '')"
    ),
    'custom-type-is-builtin': f'(({LEAF}, (0, 1, None, None, list, 1, 2, None)), False, "")',
    'custom-type-none': f'(({LEAF}, (0, 1, None, None, None, 1, 2, None)), False, "")',
    'custom-type-unknown': f'(({LEAF}, (0, 1, None, None, Point, 1, 2, None)), False, "")',
    'more-children-than-nodes': '(((3, 2, None, None, None, 2, 3, None),), False, "")',
    'inconsistent-node-count': (
        f'(((1, 0, None, None, None, 1, 5, None), {LEAF}, (3, 2, None, None, None, 2, 3, None)), '
        'False, "")'
    ),
    'two-trees': f'(({LEAF}, {LEAF}), False, "")',
}

SETSTATE = """
spec = PyTreeSpec.__new__(PyTreeSpec)
spec.__setstate__(STATE)
result = spec
"""


@pytest.mark.parametrize('case', list(MALFORMED_STATES))
def test_malformed_states_are_rejected_alike(differential, case):
    setup = f'STATE = {MALFORMED_STATES[case]}\n'
    ((ours, _),) = differential.check(setup, [SETSTATE], isolated=True)
    assert not ours['ok'] and ours['exc_type'] == 'RuntimeError', ours
    assert 'PyTreeSpec' in ours['message'], ours


def test_a_frozendict_node_is_refused_without_frozendict_support(differential):
    setup = textwrap.dedent(
        """
        nodes, none_is_leaf, namespace = optree.tree_structure({'b': 1, 'a': 2}).__getstate__()
        STATE = (nodes[:-1] + ((int(PyTreeKind.FROZENDICT), *nodes[-1][1:]),), False, '')
        """,
    )
    ((ours, _),) = differential.check(setup, [SETSTATE], check_message=True, isolated=True)
    assert ours['exc_type'] == 'ValueError', ours


ALIASING = MYBAG_NO_ENTRIES + textwrap.dedent(
    """
    tag = {'label': 'shared'}
    tree = {
        'b': [1, {'y': 2, 'x': 3}],
        'a': OrderedDict(z=4, w=5),
        'd': defaultdict(int, {'q': 6, 'p': 7}),
        'c': MyBag(8, 9, tag=tag),
    }
    leaves, spec = optree.tree_flatten(tree, namespace='zoo')


    def scribble(state):
        for node in state[0]:
            data, original_keys = node[2], node[7]
            keys = data[1] if type(data) is tuple and len(data) == 2 else data
            if type(keys) is list:
                keys.reverse()
                keys.append('scribbled')
            if type(original_keys) is dict:
                original_keys['scribbled'] = None


    def setstate(state):
        loaded = PyTreeSpec.__new__(PyTreeSpec)
        loaded.__setstate__(state)
        return loaded
    """,
)


def test_state_does_not_alias_the_treespec(differential):
    # Keys and original keys in a state are copies both ways; custom metadata is shared as is.
    differential.check(
        ALIASING,
        [
            'scribble(spec.__getstate__())\n'
            'result = (repr(spec), spec.__getstate__(), spec.unflatten(leaves))\n',
            'state = spec.__getstate__()\n'
            'loaded = setstate(state)\n'
            'scribble(state)\n'
            'result = (repr(loaded), loaded == spec, loaded.unflatten(leaves), loaded.entries())\n',
            '[node[2] is tag for node in spec.__getstate__()[0]]',
            '[node[2] is tag for node in setstate(spec.__getstate__()).__getstate__()[0]]',
            "tag['label'] = 'changed'\nresult = repr(spec)\n",
        ],
    )
