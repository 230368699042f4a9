"""Bad input: clear Python exceptions of the reference's types, never a crash.

Cases that could crash a broken implementation (deep nesting, cycles, malformed custom flatten
results, malformed pickle state) evaluate our side in a child process.
"""

from __future__ import annotations

import textwrap

import pytest
from harness.differential import run_ours_isolated
from harness.snippets import NODE_CLASS

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def assert_all_raise(differential, setup, exprs, expected, *, isolated=True, check_message=False):
    """Every expression raises ``expected`` on both sides (types compared), with a message."""
    pairs = differential.check(setup, exprs, isolated=isolated, check_message=check_message)
    names = {cls.__name__ for cls in (expected if isinstance(expected, tuple) else (expected,))}
    for expr, (ours, theirs) in zip(exprs, pairs, strict=True):
        assert not theirs['ok'] and theirs['exc_type'] in names, f'reference: {expr}: {theirs}'
        assert not ours['ok'] and ours['exc_type'] in names, f'ours: {expr}: {ours}'
        assert ours['message'].strip(), f'{expr}: our {ours["exc_type"]} has an empty message'
    return pairs


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

CUSTOM_NODE = (
    NODE_CLASS
    + """

optree.register_pytree_node(
    Node,
    lambda node: (node.children, None),
    lambda meta, children: Node(*children),
    namespace='bad-input',
)
"""
)

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
# Registration errors
# ---------------------------------------------------------------------------------------------

_REG = 'optree.register_pytree_node({cls}, lambda x: ((), None), lambda m, c: None, namespace={ns})'


BUILTIN_NODE_TYPES = {
    'list': 'list',
    'tuple': 'tuple',
    'dict': 'dict',
    'type(None)': 'NoneType',
    'OrderedDict': 'OrderedDict',
    'defaultdict': 'defaultdict',
    'deque': 'deque',
}


@pytest.mark.parametrize('cls', list(BUILTIN_NODE_TYPES))
def test_registering_builtin_type_raises(differential, cls):
    pairs = assert_all_raise(
        differential,
        '',
        [
            _REG.format(cls=cls, ns="'reg-builtin'"),
            f'optree.unregister_pytree_node({cls}, namespace="reg-builtin")',
        ],
        ValueError,
        isolated=False,
        check_message=False,
    )
    for ours, _ in pairs:
        assert BUILTIN_NODE_TYPES[cls] in ours['message'], ours


def test_registration_outcomes_for_other_types(differential):
    differential.check(
        'import collections\n',
        [
            _REG.format(cls='int', ns="'reg-other'"),
            _REG.format(cls='time.struct_time', ns="'reg-other'"),
            _REG.format(cls="namedtuple('P', 'x')", ns="'reg-other'"),
            _REG.format(cls='type("Sub", (list,), {})', ns="'reg-other'"),
        ],
    )


def test_registering_twice_in_same_namespace_raises(differential, namespace):
    setup = f'class A:\n    pass\n\nNS = {namespace!r}\n' + _REG.format(cls='A', ns='NS') + '\n'
    assert_all_raise(
        differential, setup, [_REG.format(cls='A', ns='NS')], ValueError, isolated=False
    )
    # ... but another namespace is fine, and the first registration still works.
    differential.check(
        setup,
        [
            _REG.format(cls='A', ns='NS + "-other"'),
            'optree.tree_structure([A()], namespace=NS)',
            "optree.tree_structure([A()], namespace='unrelated')",
        ],
    )


def test_register_pytree_node_class_twice_raises(differential, namespace):
    setup = textwrap.dedent(
        f"""
        NS = {namespace!r}


        class C:
            def tree_flatten(self):
                return (), None

            @classmethod
            def tree_unflatten(cls, metadata, children):
                return cls()


        optree.register_pytree_node_class(C, namespace=NS)
        """,
    )
    assert_all_raise(
        differential,
        setup,
        ['optree.register_pytree_node_class(C, namespace=NS)'],
        ValueError,
        isolated=False,
    )


def test_unregistering_unregistered_type_raises(differential, namespace):
    setup = f'class A:\n    pass\n\nNS = {namespace!r}\n'
    assert_all_raise(
        differential,
        setup,
        [
            'optree.unregister_pytree_node(A, namespace=NS)',
            _REG.format(cls='A', ns='NS') + '\n'
            'optree.unregister_pytree_node(A, namespace=NS)\n'
            'optree.unregister_pytree_node(A, namespace=NS)\n',
            _REG.format(cls='A', ns='NS') + '\n'
            "optree.unregister_pytree_node(A, namespace=NS + '-elsewhere')\n",
        ],
        ValueError,
        isolated=False,
    )


def test_registration_argument_errors(differential):
    setup = 'class A:\n    pass\n'
    assert_all_raise(
        differential,
        setup,
        [_REG.format(cls='A', ns="''"), "optree.unregister_pytree_node(A, namespace='')"],
        ValueError,
        isolated=False,
    )
    assert_all_raise(
        differential,
        setup,
        [
            _REG.format(cls='A', ns='1'),
            _REG.format(cls='A()', ns="'reg-args'"),
            "optree.unregister_pytree_node(A(), namespace='reg-args')",
            'optree.unregister_pytree_node(A, namespace=None)',
            'optree.register_pytree_node(A, lambda x: ((), None), lambda m, c: A(), '
            "path_entry_type=int, namespace='x')",
        ],
        TypeError,
        isolated=False,
    )


def test_register_then_unregister_round_trip(differential, namespace):
    setup = textwrap.dedent(
        f"""
        NS = {namespace!r}


        class A:
            def __init__(self, x):
                self.x = x

            def __repr__(self):
                return f'A({{self.x!r}})'


        optree.register_pytree_node(A, lambda a: ((a.x,), None), lambda m, c: A(*c), namespace=NS)
        tree = [A(1), A([2, 3])]
        """,
    )
    differential.check(
        setup,
        [
            'optree.tree_flatten(tree, namespace=NS)',
            'optree.unregister_pytree_node(A, namespace=NS).type',
            'optree.unregister_pytree_node(A, namespace=NS)\nresult = optree.tree_flatten(tree, '
            'namespace=NS)\n',
            'spec = optree.tree_structure(tree, namespace=NS)\n'
            'optree.unregister_pytree_node(A, namespace=NS)\n'
            'result = spec.unflatten([7, 8, 9])\n',
            'data = pickle.dumps(optree.tree_structure(tree, namespace=NS))\n'
            'optree.unregister_pytree_node(A, namespace=NS)\n'
            'result = pickle.loads(data)\n',
        ],
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


# ---------------------------------------------------------------------------------------------
# Malformed pickle state
# ---------------------------------------------------------------------------------------------

# Run in a child process with *our* optree only: the reference itself crashes on some of these.
PICKLE_FUZZ = textwrap.dedent(
    """
    REPLACEMENTS = [None, -1, 0, 1, 2**31, 2**64 + 1, 'x', (), [], 1.5, {}]
    ACCEPTABLE = (ValueError, TypeError)


    def mutations(obj, path=()):
        for r in REPLACEMENTS:
            if type(r) is not type(obj) or r != obj:
                yield path + ('=' + repr(r),), r
        if isinstance(obj, (tuple, list)):
            for i, x in enumerate(obj):
                for p, m in mutations(x, path + (i,)):
                    items = list(obj)
                    items[i] = m
                    yield p, type(obj)(items)
            if obj:
                yield path + ('drop-last',), type(obj)(list(obj)[:-1])
            yield path + ('append',), type(obj)(list(obj) + [None])
        elif isinstance(obj, dict):
            for k, v in obj.items():
                for p, m in mutations(v, path + (k,)):
                    d = dict(obj)
                    d[k] = m
                    yield p, d


    def rebuild(func, args, state):
        obj = func(*args)
        if state is None:  # pickle skips BUILD: an uninitialized treespec, which raises on use
            try:
                repr(obj)
            except ValueError as ex:
                assert 'not initialized' in str(ex), ex
                raise
        else:
            setstate = getattr(obj, '__setstate__', None)
            if setstate is not None:
                setstate(state)
            else:
                obj.__dict__.update(state)
        return obj


    def fuzz(spec, protocol=2):
        rv = spec.__reduce_ex__(protocol)
        func, args = rv[0], rv[1]
        state = rv[2] if len(rv) > 2 else None
        bad = []
        counts = collections.Counter()
        targets = [('args', args)] + ([('state', state)] if state is not None else [])
        for which, target in targets:
            for path, mutated in mutations(target):
                sys.stderr.write(f'{which} {path!r}\\n')
                sys.stderr.flush()
                a, s = (mutated, state) if which == 'args' else (args, mutated)
                try:
                    obj = rebuild(func, a, s)
                except ACCEPTABLE as ex:
                    counts[type(ex).__name__] += 1
                    continue
                except RuntimeError as ex:
                    if type(ex) is RuntimeError:  # what optree 0.20 raises for malformed states
                        counts['RuntimeError'] += 1
                        continue
                    bad.append((which, path, f'{type(ex).__name__}: {ex}'))
                    continue
                except Exception as ex:
                    bad.append((which, path, f'{type(ex).__name__}: {ex}'))
                    continue
                if not isinstance(obj, optree.PyTreeSpec):
                    counts['not-a-spec'] += 1
                    continue
                # An accepted state must describe a usable, self-consistent treespec: its
                # leaf count agrees with the object it rebuilds.
                try:
                    repr(obj)
                    hash(obj)
                    assert obj == obj
                    rebuilt = obj.unflatten(list(range(obj.num_leaves)))
                    count = len(
                        optree.tree_leaves(
                            rebuilt, none_is_leaf=obj.none_is_leaf, namespace=obj.namespace
                        )
                    )
                    if count != obj.num_leaves:
                        bad.append(
                            (which, path, f'accepted, {obj!r} rebuilds {rebuilt!r}: {count} leaves')
                        )
                    else:
                        counts['accepted'] += 1
                except Exception as ex:
                    bad.append((which, path, f'accepted but unusable: {type(ex).__name__}: {ex}'))
        return bad, dict(counts)
    """,
)

PICKLE_FUZZ_TREES = {
    'dict-list-deque': "{'a': [1, (2, None)], 'b': deque([3], maxlen=4)}",
    'namedtuple-ordereddict': 'Point(1, OrderedDict(z=2, a=None))',
    'defaultdict-structseq': 'defaultdict(list, {1: os.terminal_size((2, 3))})',
    'none-is-leaf': "optree.tree_structure([None, {'k': None}], none_is_leaf=True)",
    'custom': 'CUSTOM',
    'leaf': '1',
}


@pytest.mark.parametrize('case', list(PICKLE_FUZZ_TREES))
def test_malformed_pickle_state_never_crashes(case):
    tree = PICKLE_FUZZ_TREES[case]
    setup = PICKLE_FUZZ + CUSTOM_NODE
    if tree == 'CUSTOM':
        spec_expr = "optree.tree_structure([Node(1, (2,)), Node()], namespace='bad-input')"
    elif tree.startswith('optree.'):
        spec_expr = tree
    else:
        spec_expr = f'optree.tree_structure({tree})'
    (outcome,) = run_ours_isolated([(setup, f'fuzz({spec_expr})')])
    assert outcome['ok'], f'the fuzz harness itself failed: {outcome}'
    bad, counts = eval(outcome['repr'])
    assert not bad, f'{len(bad)} malformed states were mishandled (counts {counts}):\n' + '\n'.join(
        map(str, bad[:25]),
    )


# Rebuild a treespec from a (possibly garbage) state through whichever protocol our
# PyTreeSpec pickles with: ``(func, args, state)`` -> ``func(*args).__setstate__(state)``, or
# ``(func, (..., state))`` -> ``func(..., garbage)``.
LOAD_WITH_STATE = """
spec = optree.tree_structure({'a': [1, 2]})
rv = spec.__reduce_ex__(2)
func, args = rv[0], rv[1]
has_state = len(rv) > 2 and rv[2] is not None


def load(garbage):
    if has_state:
        obj = func(*args)
        obj.__setstate__(garbage)
        return obj
    return func(*args[:-1], garbage)
"""

GARBAGE_STATES = [
    'None',
    '()',
    "'x'",
    '42',
    '[]',
    '{}',
    '(None, None, None)',
    '((), False, "")',
    '(((),), False, "")',
    '(((1, 0, None, None, None, 1, 1, None),), "no", "")',
    '(((1, 0, None, None, None, 1, 1, None),), False, 7)',
    '(((99, 0, None, None, None, 1, 1, None),), False, "")',
    '(((4, 5, None, None, None, 1, 1, None),), False, "")',
    '(((1, 0, None, None, None, 1, 1, None), (1, 0, None, None, None, 1, 1, None)), False, "")',
]


def test_load_garbage_state_raises():
    """Garbage pickle states raise a clean exception on load, never crash, never load."""
    exprs = []
    for garbage in GARBAGE_STATES:
        exprs.append(
            'try:\n'
            f'    obj = load({garbage})\n'
            'except (ValueError, TypeError, RuntimeError) as ex:\n'
            '    result = type(ex).__name__\n'
            'else:\n'
            "    result = ('accepted', repr(obj))\n",
        )
    outcomes = run_ours_isolated([(LOAD_WITH_STATE, expr) for expr in exprs])
    for garbage, outcome in zip(GARBAGE_STATES, outcomes, strict=True):
        assert outcome['ok'], f'state {garbage}: unexpected exception {outcome}'
        assert outcome['repr'] in {"'ValueError'", "'TypeError'", "'RuntimeError'"}, (
            f'state {garbage}: malformed state accepted: {outcome["repr"]}'
        )


def test_setstate_on_live_spec_does_not_mutate_it():
    """A PyTreeSpec is immutable: __setstate__ on a live one raises or changes nothing."""
    setup = (
        "spec = optree.tree_structure({'a': [1, 2]})\n"
        'before = (repr(spec), hash(spec), spec.num_leaves)\n'
        'rv = optree.tree_structure((1, 2, 3)).__reduce_ex__(2)\n'
        'other_state = rv[2] if len(rv) > 2 and rv[2] is not None else rv[1][-1]\n'
    )
    expr = (
        'try:\n'
        '    spec.__setstate__(other_state)\n'
        'except Exception as ex:\n'
        '    pass\n'
        'result = (repr(spec), hash(spec), spec.num_leaves) == before and spec.unflatten([1, 2]) '
        '== {"a": [1, 2]}\n'
    )
    (outcome,) = run_ours_isolated([(setup, expr)])
    assert outcome['ok'] and outcome['repr'] == 'True', outcome


def test_uninitialized_treespec_never_crashes():
    """``PyTreeSpec.__new__(PyTreeSpec)`` fails, or its methods raise or work: never crash.

    (optree 0.20 segfaults on ``repr`` of such an object: ours must not.)
    """
    exprs = [
        "sys.stderr.write('PyTreeSpec()\\n')\n"
        'sys.stderr.flush()\n'
        'result = type(PyTreeSpec()).__name__\n',
        "sys.stderr.write('PyTreeSpec.__new__(PyTreeSpec)\\n')\n"
        'sys.stderr.flush()\n'
        'result = type(PyTreeSpec.__new__(PyTreeSpec)).__name__\n',
    ]
    uses = [
        'repr(s)',
        's.num_leaves',
        's.num_nodes',
        'hash(s)',
        's == s',
        's.unflatten([])',
        's.children()',
        'pickle.dumps(s)',
        's.paths()',
        's.is_leaf()',
        'len(s)',
        's.compose(s)',
        'copy.deepcopy(s)',
    ]
    for use in uses:
        exprs.append(
            f'sys.stderr.write({use!r} + "\\n")\n'
            'sys.stderr.flush()\n'
            'try:\n'
            '    s = PyTreeSpec.__new__(PyTreeSpec)\n'
            'except TypeError:\n'
            "    result = 'cannot create'\n"
            'else:\n'
            '    try:\n'
            f'        {use}\n'
            '    except (TypeError, ValueError, RuntimeError):\n'
            "        result = 'raised'\n"
            '    else:\n'
            "        result = 'worked'\n",
        )
    outcomes = run_ours_isolated([('', expr) for expr in exprs])
    assert not outcomes[0]['ok'] and outcomes[0]['exc_type'] == 'TypeError', outcomes[0]
    for expr, outcome in zip(exprs[2:], outcomes[2:], strict=True):
        assert outcome['ok'], f'{expr}: {outcome}'


def test_truncated_and_corrupted_pickles_never_crash():
    setup = CUSTOM_NODE + textwrap.dedent(
        """
        spec = optree.tree_structure(
            {'a': [1, (2, None)], 'b': Point(deque([3], maxlen=4), Node(5))}, namespace='bad-input'
        )
        data = pickle.dumps(spec, protocol=pickle.HIGHEST_PROTOCOL)


        def attempt(blob):
            try:
                obj = pickle.loads(blob)
            except Exception as ex:
                return 'raised'
            try:
                repr(obj)
                if isinstance(obj, optree.PyTreeSpec):
                    obj.unflatten(range(obj.num_leaves))
            except Exception:
                return 'raised-later'
            return 'loaded'
        """,
    )
    exprs = [
        'collections.Counter(attempt(data[:i]) for i in range(len(data)))',
        'collections.Counter(attempt(data[:i] + bytes([(data[i] + 1) % 256]) + data[i + 1:]) for i '
        'in range(len(data)))',
        'collections.Counter(attempt(data[:i] + bytes([0]) + data[i + 1:]) for i in '
        'range(len(data)))',
    ]
    outcomes = run_ours_isolated([(setup, expr) for expr in exprs])
    for expr, outcome in zip(exprs, outcomes, strict=True):
        assert outcome['ok'], f'{expr}: {outcome}'


def test_unpickling_unregistered_custom_type(differential, namespace):
    setup = textwrap.dedent(
        f"""
        NS = {namespace!r}


        class A:
            def __init__(self, *c):
                self.c = c


        optree.register_pytree_node(A, lambda a: (a.c, None), lambda m, c: A(*c), namespace=NS)
        data = pickle.dumps(optree.tree_structure([A(1, 2)], namespace=NS))
        optree.unregister_pytree_node(A, namespace=NS)
        """,
    )
    differential.check(setup, ['pickle.loads(data)'])
