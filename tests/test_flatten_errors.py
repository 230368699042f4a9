"""Flatten, unflatten and treespec queries on bad input: clear Python exceptions of the
reference's types, never a crash. Recursion depth and cycles, wrong leaf counts, malformed custom
flatten results, callbacks that raise (the registry stays intact), flatten_up_to messages,
child / entry indices out of range.

Cases that could crash a broken implementation (deep nesting, cycles, malformed custom flatten
results) evaluate our side in a child process.
"""

from __future__ import annotations

import textwrap

import pytest

from harness.differential import assert_all_raise, run_ours_isolated
from harness.snippets import registered_node

FLATTENING_OPS = {
    'tree_flatten': 'optree.tree_flatten(tree{kw})',
    'tree_leaves': 'optree.tree_leaves(tree{kw})',
    'tree_structure': 'optree.tree_structure(tree{kw})',
    'tree_iter': 'list(optree.tree_iter(tree{kw}))',
    'tree_paths': 'optree.tree_paths(tree{kw})',
    'tree_flatten_with_path': 'optree.tree_flatten_with_path(tree{kw})',
    'tree_accessors': 'optree.tree_accessors(tree{kw})',
    'tree_map': 'optree.tree_map(lambda x: x, tree{kw})',
    'tree_map_with_path': 'optree.tree_map_with_path(lambda p, x: x, tree{kw})',
    'is_leaf': 'optree.tree_leaves(tree, is_leaf=lambda x: False{kw})',
    'none_is_leaf': 'optree.tree_leaves(tree, none_is_leaf=True{kw})',
    'tree_replace_nones': 'optree.tree_replace_nones(0, tree{kw})',
    'tree_unflatten-map': 'optree.tree_map(lambda x, y: x, tree, tree{kw})',
}

CUSTOM_NODE = registered_node('bad-input')

DEEP_BUILDERS = {
    'list': 'lambda acc: [acc]',
    'tuple': 'lambda acc: (acc,)',
    'dict': "lambda acc: {'k': acc}",
    'namedtuple': 'lambda acc: Point(acc, 1)',
    'ordereddict': 'lambda acc: OrderedDict(k=acc)',
    'deque': 'lambda acc: deque([acc])',
    'custom': 'lambda acc: Node(acc)',
}


# ---------------------------------------------------------------------------------------------
# Deep nesting and cycles
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize('op', list(FLATTENING_OPS))
def test_deeper_than_max_recursion_depth_raises_recursion_error(differential, op):
    exprs = []
    for name, builder in DEEP_BUILDERS.items():
        exprs.append(
            f'f = {builder}\n'
            'tree = 0\n'
            'for _ in range(optree.MAX_RECURSION_DEPTH + 10):\n'
            '    tree = f(tree)\n'
            f'result = {FLATTENING_OPS[op].format(kw=", namespace=NS")}  # {name}\n',
        )
    setup = CUSTOM_NODE + "NS = 'bad-input'\n"
    assert_all_raise(differential, setup, exprs, RecursionError)


def test_recursion_depth_boundary(differential):
    """Flattening agrees with the reference at depths around MAX_RECURSION_DEPTH."""
    exprs = []
    for builder in ('lambda acc: [acc]', "lambda acc: {'k': acc}", 'lambda acc: Point(acc, None)'):
        for delta in (-3, -2, -1, 0, 1, 2):
            exprs.append(
                f'f = {builder}\n'
                'tree = 0\n'
                f'for _ in range(optree.MAX_RECURSION_DEPTH + ({delta})):\n'
                '    tree = f(tree)\n'
                'result = optree.tree_structure(tree).num_nodes\n',
            )
            exprs.append(
                f'f = {builder}\n'
                'tree = 0\n'
                f'for _ in range(optree.MAX_RECURSION_DEPTH + ({delta})):\n'
                '    tree = f(tree)\n'
                'result = len(optree.tree_flatten_with_path(tree)[0][0])\n',
            )
    differential.check('', exprs, isolated=True)


@pytest.mark.parametrize(
    'cycle',
    [
        'tree = []\ntree.append(tree)\n',
        'tree = [1, 2]\ntree.append((3, tree))\n',
        "tree = {}\ntree['self'] = tree\n",
        "tree = OrderedDict()\ntree['a'] = [tree]\n",
        'tree = deque()\ntree.append(tree)\n',
        "tree = defaultdict(list)\ntree['x'] = Point(tree, 1)\n",
        'tree = Node()\ntree.children = (1, tree)\n',
    ],
    ids=[
        'list',
        'list-via-tuple',
        'dict',
        'ordereddict',
        'deque',
        'defaultdict-via-namedtuple',
        'custom',
    ],
)
def test_self_containing_tree_raises_recursion_error(differential, cycle):
    setup = CUSTOM_NODE + "NS = 'bad-input'\n" + cycle
    exprs = [expr.format(kw=', namespace=NS') for expr in FLATTENING_OPS.values()]
    assert_all_raise(differential, setup, exprs, RecursionError)


def test_cycle_then_normal_flatten_still_works(differential):
    setup = 'tree = []\ntree.append(tree)\n'
    differential.check(
        setup,
        [
            'try:\n'
            '    optree.tree_leaves(tree)\n'
            'except RecursionError:\n'
            '    pass\n'
            "result = optree.tree_flatten([1, {'a': (2, None)}])\n",
        ],
        isolated=True,
    )


# ---------------------------------------------------------------------------------------------
# Unflatten with the wrong number of leaves
# ---------------------------------------------------------------------------------------------

UNFLATTEN_SETUP = "spec = optree.tree_structure({'a': [1, (2, None)], 'b': Point(3, 4)})\n"


def test_unflatten_too_few_leaves(differential):
    pairs = assert_all_raise(
        differential,
        UNFLATTEN_SETUP,
        [
            'spec.unflatten([1, 2, 3])',
            'optree.tree_unflatten(spec, [])',
            'optree.tree_unflatten(spec, iter([1]))',
            'optree.tree_unflatten(optree.tree_structure([1, 2]), (x for x in [1]))',
        ],
        ValueError,
        isolated=False,
    )
    for ours, _ in pairs:
        assert 'leaves' in ours['message'].lower(), ours


def test_unflatten_too_many_leaves(differential):
    pairs = assert_all_raise(
        differential,
        UNFLATTEN_SETUP,
        [
            'spec.unflatten([1, 2, 3, 4, 5])',
            'optree.tree_unflatten(spec, range(100))',
            'optree.tree_unflatten(optree.treespec_leaf(), [1, 2])',
            'optree.tree_unflatten(optree.treespec_none(), [1])',
            'optree.tree_unflatten(optree.tree_structure(()), (x for x in [1]))',
        ],
        ValueError,
        isolated=False,
    )
    for ours, _ in pairs:
        assert 'leaves' in ours['message'].lower(), ours


def test_unflatten_bad_arguments(differential):
    assert_all_raise(
        differential,
        UNFLATTEN_SETUP,
        ['spec.unflatten(5)', 'spec.unflatten(None)'],
        TypeError,
        isolated=False,
    )
    differential.check(
        UNFLATTEN_SETUP,
        ['optree.tree_unflatten([1], [1])', 'optree.tree_unflatten(None, [])'],
    )


def test_unflatten_propagates_iterator_errors(differential):
    setup = UNFLATTEN_SETUP + 'def gen():\n    yield 1\n    raise KeyError("from the iterator")\n'
    assert_all_raise(differential, setup, ['spec.unflatten(gen())'], KeyError, isolated=False)


# ---------------------------------------------------------------------------------------------
# Malformed custom flatten functions
# ---------------------------------------------------------------------------------------------

BAD_FLATTEN = {
    'returns-list-pair': 'lambda node: [node.children, None]',
    'returns-str-pair': "lambda node: 'ab'",
    'returns-none': 'lambda node: None',
    'returns-int': 'lambda node: 42',
    'returns-dict': "lambda node: {'children': node.children}",
    'returns-1-tuple': 'lambda node: (node.children,)',
    'returns-4-tuple': 'lambda node: (node.children, None, None, None)',
    'returns-empty-tuple': 'lambda node: ()',
    'too-few-entries': "lambda node: (node.children, None, ('only-one',))",
    'too-many-entries': "lambda node: (node.children, None, ('a', 'b', 'c'))",
    'non-iterable-children': 'lambda node: (5, None)',
    'non-iterable-entries': 'lambda node: (node.children, None, 5)',
    'none-children': 'lambda node: (None, None)',
    'generator-children': 'lambda node: ((c for c in node.children), None)',
    'children-iterator-raises': 'lambda node: (map(lambda c: 1 / 0, node.children), None)',
    'unhashable-metadata': 'lambda node: (node.children, [1, {}])',
    'raises': 'lambda node: 1 / 0',
}


@pytest.mark.parametrize('case', list(BAD_FLATTEN))
def test_malformed_custom_flatten(differential, case):
    setup = textwrap.dedent(
        f"""
        class Node:
            def __init__(self, *children):
                self.children = children

            def __repr__(self):
                return f'Node{{self.children!r}}'


        optree.register_pytree_node(
            Node,
            {BAD_FLATTEN[case]},
            lambda meta, children: Node(*children),
            namespace='bad-flatten',
        )
        NS = 'bad-flatten'
        tree = [Node(1, 2), 3]
        """,
    )
    exprs = [expr.format(kw=', namespace=NS') for expr in FLATTENING_OPS.values()]
    exprs += [
        'optree.tree_flatten_one_level(Node(1, 2), namespace=NS)',
        'optree.tree_structure([1, 2]).flatten_up_to([Node(1, 2), 3])',
        # The registry and the flattening machinery still work afterwards.
        'try:\n    optree.tree_leaves(tree, namespace=NS)\nexcept Exception:\n    pass\n'
        "result = optree.tree_flatten([Point(1, None), {'b': 2, 'a': (3,)}], namespace=NS)\n",
    ]
    differential.check(setup, exprs, isolated=True)


def test_custom_unflatten_errors_propagate(differential):
    setup = textwrap.dedent(
        """
        class Node:
            def __init__(self, *children):
                self.children = children


        def unflatten(meta, children):
            raise KeyError('unflatten failed')


        optree.register_pytree_node(
            Node, lambda n: (n.children, None), unflatten, namespace='bad-unflatten'
        )
        NS = 'bad-unflatten'
        leaves, spec = optree.tree_flatten([Node(1, 2)], namespace=NS)
        """,
    )
    assert_all_raise(
        differential,
        setup,
        [
            'spec.unflatten(leaves)',
            'optree.tree_map(lambda x: x, [Node(1, 2)], namespace=NS)',
            'optree.tree_map_with_path(lambda p, x: x, [Node(1, 2)], namespace=NS)',
            'optree.tree_replace_nones(0, [Node(None)], namespace=NS)',
        ],
        KeyError,
        isolated=True,
    )


# ---------------------------------------------------------------------------------------------
# Exceptions in user callbacks leave the registry intact
# ---------------------------------------------------------------------------------------------


def test_is_leaf_exception_propagates_and_registry_is_intact(differential):
    setup = CUSTOM_NODE + textwrap.dedent(
        """
        NS = 'bad-input'
        tree = [1, Node(2, (3, None)), {'a': 4}]
        before = optree._C.get_registry_size(NS)


        def is_leaf(x):
            if x == 3:
                raise ArithmeticError('is_leaf failed')
            return False
        """,
    )
    exprs = [
        'optree.tree_flatten(tree, is_leaf=is_leaf, namespace=NS)',
        'optree.tree_leaves(tree, is_leaf=is_leaf, namespace=NS)',
        'optree.tree_structure(tree, is_leaf=is_leaf, namespace=NS)',
        'list(optree.tree_iter(tree, is_leaf=is_leaf, namespace=NS))',
        'optree.tree_flatten_with_path(tree, is_leaf=is_leaf, namespace=NS)',
        'optree.tree_map(id, tree, is_leaf=is_leaf, namespace=NS)',
        'optree.tree_is_leaf(3, is_leaf=is_leaf)',
    ]
    assert_all_raise(differential, setup, exprs, ArithmeticError, isolated=False)
    differential.check(
        setup,
        [
            'try:\n'
            '    optree.tree_flatten(tree, is_leaf=is_leaf, namespace=NS)\n'
            'except ArithmeticError:\n'
            '    pass\n'
            'result = (optree.tree_flatten(tree, namespace=NS), optree._C.get_registry_size(NS) - '
            'before)\n',
        ],
    )


def test_custom_flatten_exception_propagates_and_registry_is_intact(differential, namespace):
    setup = textwrap.dedent(
        f"""
        NS = {namespace!r}


        class Flaky:
            fail = True

            def __init__(self, *children):
                self.children = children

            def __repr__(self):
                return f'Flaky{{self.children!r}}'


        def flatten(node):
            if Flaky.fail:
                raise LookupError('flatten failed')
            return node.children, None


        optree.register_pytree_node(Flaky, flatten, lambda m, c: Flaky(*c), namespace=NS)
        tree = {{'x': Flaky(1, [2])}}
        before = optree._C.get_registry_size(NS)
        """,
    )
    assert_all_raise(
        differential,
        setup,
        ['optree.tree_flatten(tree, namespace=NS)', 'list(optree.tree_iter(tree, namespace=NS))'],
        LookupError,
        isolated=False,
    )
    differential.check(
        setup,
        [
            'try:\n'
            '    optree.tree_flatten(tree, namespace=NS)\n'
            'except LookupError:\n'
            '    pass\n'
            'Flaky.fail = False\n'
            'result = (optree.tree_flatten(tree, namespace=NS), optree._C.get_registry_size(NS) - '
            'before)\n',
        ],
    )


def test_registry_changes_during_flatten():
    """A flatten function that (un)registers types mid-traversal must not crash."""
    setup = textwrap.dedent(
        """
        NS = 'bad-mutating'


        class Other:
            def __init__(self, *c):
                self.c = c

            def __repr__(self):
                return f'Other{self.c!r}'


        class Mutating:
            def __init__(self, *c):
                self.c = c

            def __repr__(self):
                return f'Mutating{self.c!r}'


        def flatten(node):
            try:
                optree.register_pytree_node(
                    Other, lambda o: (o.c, None), lambda m, c: Other(*c), namespace=NS
                )
            except ValueError:
                optree.unregister_pytree_node(Other, namespace=NS)
            return node.c, None


        def self_unregistering(node):
            optree.unregister_pytree_node(SelfUnreg, namespace=NS)
            return node.c, None


        class SelfUnreg(Mutating):
            pass


        optree.register_pytree_node(Mutating, flatten, lambda m, c: Mutating(*c), namespace=NS)
        optree.register_pytree_node(
            SelfUnreg, self_unregistering, lambda m, c: SelfUnreg(*c), namespace=NS
        )
        """,
    )
    # optree 0.20 sees registrations made mid-traversal; ours may use a per-call snapshot of
    # the registry. Either way: a clean result or a clean exception, and a consistent registry.
    exprs = [
        'optree.tree_flatten([Mutating(1, Other(2)), Mutating(Other(3), Mutating(4))], '
        'namespace=NS)',
        'optree.tree_leaves([SelfUnreg(1, SelfUnreg(2)), SelfUnreg(3)], namespace=NS)',
        'leaves, spec = optree.tree_flatten([SelfUnreg(1, 2)], namespace=NS)\n'
        'result = (leaves, spec, spec.unflatten(leaves))\n',
        'list(optree.tree_iter([Mutating(Other(1)), Mutating(Other(2))], namespace=NS))',
    ]
    check_after = (
        '\ntry:\n'
        '    result\n'
        'except NameError:\n'
        '    pass\n'
        "size = optree._C.get_registry_size(NS) - optree._C.get_registry_size('never-used-ns')\n"
        'other_is_node = optree.tree_leaves(Other(1), namespace=NS) == [1]\n'
        '# (flattening a SelfUnreg node unregisters its type: check it last)\n'
        'self_unreg_is_node = optree.tree_leaves(SelfUnreg(5), namespace=NS) == [5]\n'
        'assert size == 1 + other_is_node + self_unreg_is_node, (size, other_is_node)\n'
        "result = optree.tree_flatten([Mutating(1), {'k': (2,)}], namespace=NS)\n"
    )
    cases = []
    for expr in exprs:
        body = 'try:\n' + textwrap.indent(expr if '\n' in expr else f'result = {expr}\n', '    ')
        body += 'except (ValueError, TypeError, RuntimeError):\n    pass\n'
        cases.append(
            (setup.replace("'bad-mutating'", f"'bad-mutating-{len(cases)}'"), body + check_after)
        )
    for (_, body), outcome in zip(cases, run_ours_isolated(cases), strict=True):
        assert outcome['ok'], f'{body}\n-> {outcome}'
        assert 'Mutating(None' in outcome['repr'] or 'CustomTreeNode(Mutating' in outcome['repr'], (
            outcome
        )


# ---------------------------------------------------------------------------------------------
# flatten_up_to and index errors
# ---------------------------------------------------------------------------------------------

FLATTEN_UP_TO_MISMATCHES = [
    ('[1, 2]', '(1, 2)'),
    ('[1, 2]', '[1, 2, 3]'),
    ('(1, (2, 3))', '(1, 2)'),
    ("{'a': 1, 'b': 2}", "{'a': 1, 'c': 2}"),
    ("{'a': 1, 'b': 2}", "{'a': 1}"),
    ('deque([1, 2])', '[1, 2]'),
    ('Point(1, 2)', '(1, 2)'),
    ('Point(1, 2)', 'Triple(1, 2, 3)'),
    ('os.terminal_size((1, 2))', '(1, 2)'),
    ('(None, 1)', '(1, 1)'),
    ('[None]', '[[1]]'),
    ('[1, [2]]', '[1, 2]'),
    ("{1: 'a', 'b': 2}", "{'b': 2, 2: 'a'}"),
    # The message names the kind of the treespec's node, not of the object.
    ('OrderedDict(a=1, b=2)', 'OrderedDict(a=3, c=4)'),
    ('OrderedDict(a=1, b=2)', "{'a': 3}"),
    ("{'a': 1}", 'OrderedDict(b=1)'),
    ('defaultdict(int, a=1, b=2)', "{'a': 1, 'c': 2}"),
    ('defaultdict(int, a=1)', 'OrderedDict(a=1, z=2)'),
]


# Pairs that optree 0.20 does not treat as mismatches.
FLATTEN_UP_TO_ACCEPTED = [
    ("{'a': 1}", 'OrderedDict(a=1)'),
    ('OrderedDict(a=1, b=2)', 'OrderedDict(b=2, a=1)'),
    ('defaultdict(int, a=1)', 'defaultdict(list, a=1)'),
    ('defaultdict(int, a=1)', "{'a': 1}"),
    ('deque([1, 2])', 'deque([1, 2], maxlen=3)'),
    ("{'b': 1, 'a': 2}", 'OrderedDict(b=[1], a=(2,))'),
]


@pytest.mark.parametrize(('prefix', 'full'), FLATTEN_UP_TO_MISMATCHES)
def test_flatten_up_to_mismatch_message(differential, prefix, full):
    setup = f'spec = optree.tree_structure({prefix})\ntree = {full}\n'
    assert_all_raise(
        differential,
        setup,
        [
            'spec.flatten_up_to(tree)',
            'optree.tree_map(lambda x, y: (x, y), optree.tree_unflatten(spec, '
            'range(spec.num_leaves)), tree)',
        ],
        ValueError,
        isolated=False,
        check_message=True,
    )


@pytest.mark.parametrize(('prefix', 'full'), FLATTEN_UP_TO_ACCEPTED)
def test_flatten_up_to_lenient_cases(differential, prefix, full):
    setup = f'spec = optree.tree_structure({prefix})\ntree = {full}\n'
    differential.check(
        setup,
        [
            'spec.flatten_up_to(tree)',
            'optree.tree_map(lambda x, y: (x, y), optree.tree_unflatten(spec, '
            'range(spec.num_leaves)), tree)',
        ],
        check_message=True,
    )


def test_flatten_up_to_mismatch_custom_nodes(differential, namespace):
    setup = textwrap.dedent(
        f"""
        NS = {namespace!r}


        class Tagged:
            def __init__(self, tag, *c):
                self.tag = tag
                self.c = c

            def __repr__(self):
                return f'Tagged({{self.tag!r}}, *{{self.c!r}})'


        class Other(Tagged):
            pass


        for cls in (Tagged, Other):
            optree.register_pytree_node(
                cls, lambda t: (t.c, t.tag), lambda m, c, cls=cls: cls(m, *c), namespace=NS
            )
        spec = optree.tree_structure([Tagged('x', 1, 2)], namespace=NS)
        """,
    )
    assert_all_raise(
        differential,
        setup,
        [
            "spec.flatten_up_to([Tagged('y', 1, 2)])",
            "spec.flatten_up_to([Tagged('x', 1)])",
            "spec.flatten_up_to([Other('x', 1, 2)])",
            'spec.flatten_up_to([(1, 2)])',
        ],
        ValueError,
        isolated=False,
        check_message=True,
    )
    differential.check(setup, ["spec.flatten_up_to([Tagged('x', [1], {'a': 2})])"])


@pytest.mark.parametrize(
    'tree',
    ['[1, (2, 3)]', "{'a': 1, 'b': (2,)}", 'Point(1, 2)', 'deque([1, 2])', '1', 'None', '()'],
)
def test_child_and_entry_out_of_range(differential, tree):
    setup = f'spec = optree.tree_structure({tree})\nn = spec.num_children\n'
    assert_all_raise(
        differential,
        setup,
        [
            'spec.child(n)',
            'spec.child(n + 5)',
            'spec.entry(n)',
            'spec.entry(n + 5)',
            'spec.child(-n - 1)',
            'spec.entry(-n - 1)',
        ],
        IndexError,
        isolated=False,
    )
    differential.check(
        setup,
        [
            '[spec.child(-i - 1) for i in range(n)]',
            '[spec.entry(-i - 1) for i in range(n)]',
            'spec.child(2 ** 70)',
            "spec.child('0')",
            'spec.entry(1.0)',
        ],
    )
