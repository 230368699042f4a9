"""optree.functools (partial as a pytree node, reduce) and optree.pytree (the module and its
reexport for another namespace), compared with optree 0.20.0 (messages included)."""

from __future__ import annotations

FUNCTOOLS_EXPRS = [
    'optree.functools.partial(operator.add, 1)',
    'optree.functools.partial(operator.add, 1)(2)',
    "optree.functools.partial(dict, [1, {'a': 2}], k=3)",
    "optree.tree_flatten(optree.functools.partial(dict, [1, {'a': 2}], k=3))",
    "optree.tree_paths(optree.functools.partial(dict, [1, {'a': 2}], k=3))",
    'optree.tree_map(lambda x: x * 10, optree.functools.partial(max, 1, 2, key=None))',
    'optree.tree_map(lambda x: x * 10, optree.functools.partial(max, 1, 2))(5)',
    'optree.functools.partial(optree.functools.partial(operator.add, 1))',
    'optree.functools.partial(optree.functools.partial(operator.add, 1))(5)',
    'optree.functools.partial(functools.partial(operator.add, 1))',
    'optree.functools.partial(1)',
    'optree.functools.partial()',
    'isinstance(optree.functools.partial(len), functools.partial)',
    'optree.tree_structure(optree.functools.partial(len))',
    "optree.tree_structure(optree.functools.partial(len), namespace='other')",
    '_pickle_all(optree.functools.partial(operator.add, 1))',
    'optree.functools.reduce(operator.add, [1, 2, 3])',
    'optree.functools.reduce(operator.add, [], 0)',
    'optree.functools.reduce(operator.add, [])',
    'optree.functools.reduce is functools.reduce',
]


def test_functools(differential):
    differential.check('', FUNCTOOLS_EXPRS, check_message=True)


PYTREE_EXPRS = [
    'sorted(optree.pytree.__all__)',
    "mine = optree.pytree.reexport(namespace='my-pkg', module='my_pkg.pytree')\n"
    'result = (mine.__name__, sorted(set(dir(mine)) - set(dir(optree.pytree)))[:5])',
    "mine = optree.pytree.reexport(namespace='my-pkg2', module='my_pkg2.pytree')\n"
    'class Node:\n'
    '    def __init__(self, a):\n'
    '        self.a = a\n'
    'mine.register_node(Node, lambda n: ((n.a,), None), lambda m, c: Node(*c))\n'
    'result = (mine.flatten(Node([1, 2])), optree.tree_flatten(Node([1, 2]))[0] != [1, 2])',
    "optree.pytree.reexport(namespace='', module='x')",
    "optree.pytree.reexport(namespace='ok', module='')",
    'optree.pytree.dataclasses is optree.dataclasses',
    'optree.pytree.functools is optree.functools',
]


def test_pytree_module(differential):
    differential.check('', PYTREE_EXPRS, check_message=True)
