"""tree_map and its variants over one or several trees, against optree 0.20.0.

The core maps in one pass (``optree._C._map_leaves``): it matches every other tree against the
first one's treespec, calls ``func`` per leaf and rebuilds. optree 0.20.0 flattens every other
tree with ``flatten_up_to`` first, then rebuilds from ``map(func, ...)`` (or drains it into a
``deque`` for the ``_`` variants). Each case below is an observable step of that order: which
callbacks run when, which error wins, what a ``StopIteration`` from ``func`` does, what ``func``
sees when it changes the trees.
"""

from __future__ import annotations

import textwrap

import pytest

from harness.snippets import KEY_CLASS, node_class

MAPS = {
    'tree_map': 'optree.tree_map(f, tree, *rests, namespace=NS)',
    'tree_map_': 'optree.tree_map_(f, tree, *rests, namespace=NS)',
    'tree_map_with_path': 'optree.tree_map_with_path(fp, tree, *rests, namespace=NS)',
    'tree_map_with_path_': 'optree.tree_map_with_path_(fp, tree, *rests, namespace=NS)',
    'tree_map_with_accessor': 'optree.tree_map_with_accessor(fp, tree, *rests, namespace=NS)',
    'tree_map_with_accessor_': 'optree.tree_map_with_accessor_(fp, tree, *rests, namespace=NS)',
    'tree_broadcast_map': 'optree.tree_broadcast_map(f, tree, *rests, namespace=NS)',
    'tree_broadcast_map_with_path': (
        'optree.tree_broadcast_map_with_path(fp, tree, *rests, namespace=NS)'
    ),
    'tree_broadcast_map_with_accessor': (
        'optree.tree_broadcast_map_with_accessor(fp, tree, *rests, namespace=NS)'
    ),
}

# A custom node that logs its flatten and unflatten calls, and a func that logs its calls.
EVENTS_SETUP = (
    textwrap.dedent(
        """
        NS = 'test-map'
        events = []
        """
    )
    + node_class(comparable=True)
    + textwrap.dedent(
        """
        def flatten_node(node):
            events.append(('flatten', node.children))
            return node.children, len(node.children)


        def unflatten_node(meta, children):
            events.append(('unflatten', tuple(children)))
            return Node(*children)


        optree.register_pytree_node(Node, flatten_node, unflatten_node, namespace=NS)

        stop_at = None
        raise_at = None


        def f(*args):
            events.append(('f', args))
            if args[-1] == stop_at:
                raise StopIteration
            if args[-1] == raise_at:
                raise KeyError(args[-1])
            return args


        def fp(prefix, *args):
            return f(repr(prefix), *args)


        def run(expr, tree, *trees, stop=None, fail=None):
            global stop_at, raise_at
            stop_at, raise_at = stop, fail
            events.clear()
            rests = trees
            try:
                result = eval(expr, {**globals(), 'tree': tree, 'rests': rests})
            except Exception as ex:
                result = (type(ex).__name__, str(ex))
            return result, list(events)
        """
    )
)

TREES = [
    # (tree, rests)
    ('[Node(1, 2), (3, Node(4)), 5]', '()'),
    ('[Node(1, 2), (3, Node(4)), 5]', '([Node(10, 20), (30, Node(40)), 50],)'),
    (
        '[Node(1, 2), (3, Node(4)), 5]',
        "([Node(10, 20), (30, Node(40)), 50], [Node([6], {'a': 7}), (8, Node(9)), None])",
    ),
    ("{'b': 1, 'a': (2, None), 'c': [3]}", "({'a': (20, 21), 'c': [30], 'b': 10},)"),
    ('(1, [2, 3])', '((10, [20, 30]), (100, [200, 300]), (1, [2, 3]), (0, [0, 0]))'),
    ('[]', '([],)'),
    ('7', '(8, [9], None)'),
    ('None', '(None,)'),
    # Mismatches: the first tree's error wins, and none comes after a call of func.
    ('[Node(1, 2), (3, Node(4)), 5]', '([Node(10, 20), (30, Node(40)), 50], [Node(1), 2, 3])'),
    ('[Node(1, 2), (3, Node(4)), 5]', '([Node(1), 2, 3], [Node(1, 2, 3), 4, 5])'),
    ("{'a': 1, 'b': 2}", "({'a': 1, 'b': 2}, {'a': 1, 'c': 2})"),
    ("{'a': 1, 'b': 2}", "({'a': 1},)"),
    ("{'a': 1, 'b': 2}", '(collections.OrderedDict(b=1, a=2), collections.defaultdict(int, a=3))'),
    ('(1, 2)', '([1, 2],)'),
    ('[1, 2]', '([1, 2, 3],)'),
]


@pytest.mark.parametrize('name', list(MAPS))
def test_callback_order(differential, name):
    expr = MAPS[name]
    exprs = []
    for tree, rests in TREES:
        if name.startswith('tree_broadcast') and rests in {'()'}:
            continue
        call = f'run({expr!r}, {tree}, *{rests}'
        exprs.append(call + ')')
        # func raises, and raises StopIteration, at the second leaf of the first tree.
        exprs.append(call + ', fail=2)')
        exprs.append(call + ', stop=2)')
        exprs.append(call + ', stop=5)')  # the last leaf of the first trees
    differential.check(EVENTS_SETUP, exprs, check_message=True)


MUTATION_SETUP = textwrap.dedent(
    """
    import gc

    tree = [1, [2, 3], {'k': 4}]
    other = [10, [20, 30], {'k': 40}]

    def clearing(x, y):
        # Changes both trees while the map runs: the subtrees were taken before the first call.
        other.clear()
        tree.clear()
        return (x, y)

    def replacing(x, y):
        if isinstance(y, list):
            y.append('late')
        other[2]['k'] = 'new'
        return (x, y)
    """,
)


def test_func_changes_the_trees(differential):
    differential.check(
        MUTATION_SETUP,
        [
            'optree.tree_map(clearing, tree, other), tree, other',
            'optree.tree_map(replacing, [1, 2, {"k": 3}], [[5], 6, {"k": 7}]), other',
            'optree.tree_map_(clearing, tree, other), tree, other',
            'optree.tree_map_with_path(lambda p, x, y: clearing(x, y), tree, other)',
        ],
    )


CALLABLES_SETUP = textwrap.dedent(
    """
    import functools
    import operator

    class Adder:
        def __init__(self, base):
            self.base = base

        def add(self, *args):
            return self.base + sum(args)

        def __call__(self, *args):
            return ('called', args)

    tree = {'x': 1, 'y': (2, 3), 'z': [4, {'w': 5}]}
    tree2 = {'x': 10, 'y': (20, 30), 'z': [40, {'w': 50}]}
    big = list(range(40))
    deep = [[[[[[[[[[[[[[[[[[[[1, 2]]]]]]]]]]]]]]]]]]]]
    """,
)


def test_kinds_of_func(differential):
    differential.check(
        CALLABLES_SETUP,
        [
            'optree.tree_map(max, tree, tree2, tree)',
            'optree.tree_map(Adder(100).add, tree, tree2)',
            'optree.tree_map(Adder(100), tree)',
            'optree.tree_map(functools.partial(operator.add, 1), tree)',
            'optree.tree_map(str, tree)',
            'optree.tree_map(lambda *a: a, big, big, big, big, big, big, big)',
            'optree.tree_map(lambda *a: sum(a), deep, deep, deep)',
            'optree.tree_map_with_path(lambda p, *a: (p, a), big, big, big)',
            'optree.tree_map_with_accessor(lambda a, *x: a(big), big, big)',
            'optree.tree_map(lambda x: optree.tree_map(lambda y: y + x, tree), tree)',
            'optree.tree_map(3, tree)',
            'optree.tree_map(3, [])',
            'optree.tree_map_(3, {})',
            'optree.tree_map(lambda x, y: x, tree, 5)',
            'optree.tree_map(lambda x: x, tree, tree2)',
            'optree.tree_map(lambda x, *, k: x, tree)',
        ],
        check_message=True,
    )


OPTIONS_SETUP = textwrap.dedent(
    """
    tree = [None, (1, None), {'a': None}]
    other = [0, (2, 3), {'a': [4]}]


    def is_four(node):
        return node == [4]
    """,
)


def test_options(differential):
    differential.check(
        OPTIONS_SETUP,
        [
            'optree.tree_map(lambda x, y: (x, y), tree, other, none_is_leaf=True)',
            'optree.tree_map(lambda x, y: (x, y), tree, other)',
            'optree.tree_map(lambda x, y: (x, y), other, tree)',
            'optree.tree_map(lambda x, y: (x, y), other, tree, none_is_leaf=True)',
            'optree.tree_map(lambda x, y: (x, y), other, other, is_leaf=lambda n: n == (2, 3))',
            'optree.tree_map_with_path(lambda p, x, *y: p, other, other, is_leaf=is_four)',
            'optree.tree_map(lambda x: x, tree, none_is_leaf=1)',
            'optree.tree_map(lambda x: x, tree, is_leaf=lambda n: 1 / 0)',
            'optree.tree_broadcast_map(lambda x, y: (x, y), 1, other)',
            'optree.tree_broadcast_map(lambda x, y: (x, y), other, [1, 2, 3])',
            'optree.tree_broadcast_map_with_path(lambda p, x, y: p, [1, 2, 3], other)',
        ],
        check_message=True,
    )
    # Rejected arguments: the same exceptions (pybind11 words their messages differently).
    differential.check(
        OPTIONS_SETUP,
        [
            "optree.tree_map(lambda x: x, tree, none_is_leaf='yes')",
            'optree.tree_map(lambda x: x, tree, namespace=3)',
            'optree.tree_map_(lambda x: x, tree, none_is_leaf=[])',
            'optree.tree_map_with_path(lambda x: x, tree, namespace=None)',
        ],
    )


# Dict matching: keys whose comparison runs Python code are sorted with the same comparisons, and
# mismatches report the same keys. (How often a key is hashed or compared for equality differs:
# optree compares key sets first.)
DICT_KEYS_SETUP = (
    textwrap.dedent(
        """
        calls = []
        """
    )
    + KEY_CLASS
    + textwrap.dedent(
        """
        a, b, c = Key('a'), Key('b'), Key('c')

        def run(first, *others):
            calls.clear()
            try:
                result = optree.tree_map(lambda *x: x, first, *others)
            except Exception as ex:
                result = (type(ex).__name__, str(ex))
            return result, list(calls)
        """
    )
)


def test_dict_matching(differential):
    differential.check(
        DICT_KEYS_SETUP,
        [
            'run({b: 1, a: 2}, {a: 3, b: 4})',
            'run({b: 1, a: 2}, {a: 3, c: 4})',
            'run({b: 1, a: 2}, {a: 3, b: 4, c: 5})',
            'run({b: 1, a: 2}, {Key("a"): 3, Key("b"): 4})',
            'run({"b": 1, "a": 2}, {"a": 3, "b": 4}, {"a": 5})',
            'run({"b": 1, "a": 2}, {"a": 3, "x": 4})',
            'run({2: "x", 1: "y", 3: "z"}, {1: 0, 2: 0, 3: 0})',
            'run({1: "x", True: "y"}, {1: 0})',
            'run({1: "x", "a": "y"}, {"a": 0, 1: 1})',
            'run(collections.OrderedDict(b=1, a=2), {"a": 3, "b": 4})',
            'run(collections.defaultdict(list, b=1, a=2), collections.OrderedDict(b=3, a=4))',
            'run({"a": 1}, type("D", (dict,), {})(a=1))',
        ],
        check_message=True,
    )


def test_references_held_and_released():
    # Our side only: the arguments of the calls are owned references, released once, also when a
    # later tree fails to match after earlier subtrees were taken.
    import sys

    import optree

    x = object()
    before = sys.getrefcount(x)
    for _ in range(100):
        with pytest.raises(ValueError, match='list arity mismatch'):
            optree.tree_map(lambda *a: a, [[1, 2], 3], [[x, x], x], [[x], x])
        with pytest.raises(ValueError, match='list arity mismatch'):
            optree.tree_map_with_path_(lambda *a: a, [[1, 2], 3], [[x, x], x], [[x], x])
        with pytest.raises(ZeroDivisionError):
            optree.tree_map(lambda *a: 1 / 0, [[1, 2], 3], [[x, x], x])
        mapped = optree.tree_map(lambda *a: a[-1], list(range(50)), [x] * 50)
        assert mapped == [x] * 50
        del mapped
    assert sys.getrefcount(x) == before
