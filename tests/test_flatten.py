"""Flattening and the tree functions of optree.ops over the hand-written zoo of trees, against
optree 0.20.0: every zoo tree x keyword variant (``none_is_leaf``, ``is_leaf``, ``namespace``) x
property group (flatten, unflatten, leaves, structure, paths, accessors, map, reductions, treespec
queries, pickling; see harness/properties.py), custom nodes outside their namespace, deep legal
nesting, ``dict_insertion_ordered``."""

from __future__ import annotations

import pytest

from harness.properties import MESSAGE_GROUPS, PROPERTY_GROUPS, tree_setup
from harness.zoo import VARIANTS, ZOO, ZOO_BY_ID, ZOO_NAMESPACE

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
