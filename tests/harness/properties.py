"""The expressions compared between our optree and the reference for one tree.

Every expression refers to names bound by :func:`tree_setup`: ``tree`` (the tree), ``leaves`` and
``spec`` (its flattening with the keyword arguments under test), ``KW`` (those keyword arguments
as a dict), ``bigger`` (the tree with every leaf replaced by a small subtree) and ``bigger_spec``.
"""

from __future__ import annotations

import re


def namespace_only(kwargs: str) -> str:
    match = re.search(r"namespace=('[^']*')", kwargs)
    return f'namespace={match.group(1)}' if match else ''


def tree_setup(setup: str, tree_expr: str, kwargs: str) -> str:
    """Setup source binding tree/leaves/spec/... for ``tree_expr`` flattened with ``kwargs``."""
    return (
        f'{setup}\n'
        f'KW = dict({kwargs})\n'
        f'NS = dict({namespace_only(kwargs)})\n'
        f'tree = {tree_expr}\n'
        'leaves, spec = optree.tree_flatten(tree, **KW)\n'
        "bigger = optree.tree_map(lambda x: [x, {'k': (x,)}], tree, **KW)\n"
        'bigger_spec = optree.tree_structure(bigger, **KW)\n'
    )


def _flatten_exprs() -> list[str]:
    return [
        'optree.tree_flatten(tree, **KW)',
        'optree.tree_leaves(tree, **KW)',
        'optree.tree_structure(tree, **KW)',
        'str(optree.tree_structure(tree, **KW))',
        'optree.tree_paths(tree, **KW)',
        'optree.tree_flatten_with_path(tree, **KW)',
        'list(optree.tree_iter(tree, **KW))',
        'optree.tree_map(repr, tree, **KW)',
        'optree.tree_map(lambda x, y: (x, y), tree, tree, **KW)',
        'optree.tree_map_with_path(lambda p, x: (p, x), tree, **KW)',
        'optree.tree_flatten_one_level(tree, **KW)',
        "optree.tree_replace_nones('N', tree, **NS)",
        'optree.tree_is_leaf(tree, **KW)',
        'optree.all_leaves(leaves, **KW)',
        'optree.all_leaves([tree], **KW)',
        'optree.tree_leaves(bigger, **KW)',
        'bigger_spec',
    ]


def _unflatten_exprs() -> list[str]:
    return [
        '_rebuild(tree, **KW)',
        'optree.tree_unflatten(spec, leaves)',
        'type(optree.tree_unflatten(spec, leaves))',
        'spec.unflatten(iter(leaves))',
        'spec.unflatten(leaves) == tree',
        'spec.unflatten(range(spec.num_leaves))',
    ]


def _treespec_exprs() -> list[str]:
    return [
        '(spec.num_leaves, spec.num_nodes, spec.num_children)',
        '(spec.type, spec.kind, spec.namespace, spec.none_is_leaf)',
        'len(spec)',
        'spec.children()',
        '[spec.child(i) for i in range(spec.num_children)]',
        'spec.entries()',
        '[spec.entry(i) for i in range(spec.num_children)]',
        'spec.paths()',
        '(spec.is_leaf(), spec.is_leaf(strict=False))',
        '(spec.is_prefix(spec), spec.is_prefix(spec, strict=True))',
        '(spec.is_suffix(spec), spec.is_suffix(spec, strict=True))',
        '(spec.is_prefix(bigger_spec), spec.is_prefix(bigger_spec, strict=True))',
        '(bigger_spec.is_suffix(spec), bigger_spec.is_suffix(spec, strict=True))',
        '(bigger_spec.is_prefix(spec), spec.is_suffix(bigger_spec))',
        'spec.flatten_up_to(tree)',
        'spec.flatten_up_to(bigger)',
        'spec.compose(optree.treespec_leaf(none_is_leaf=spec.none_is_leaf, '
        'namespace=spec.namespace))',
        'spec.compose(optree.tree_structure((1, [2]), none_is_leaf=spec.none_is_leaf, '
        'namespace=spec.namespace))',
        'spec.compose(optree.tree_structure((1, [2]), none_is_leaf=spec.none_is_leaf, '
        'namespace=spec.namespace)).num_leaves',
    ]


def _relation_exprs() -> list[str]:
    return [
        # Comparisons against an independently built equal spec.
        'spec == optree.tree_structure(tree, **KW)',
        'spec != optree.tree_structure(tree, **KW)',
        'hash(spec) == hash(optree.tree_structure(tree, **KW))',
        '(spec < spec, spec <= spec, spec > spec, spec >= spec)',
        '(spec < bigger_spec, spec <= bigger_spec, spec > bigger_spec, spec >= bigger_spec)',
        '(bigger_spec < spec, bigger_spec <= spec, spec == bigger_spec)',
        'spec == optree.tree_structure(tree, none_is_leaf=not spec.none_is_leaf, '
        'namespace=spec.namespace)',
    ]


def _pickle_exprs() -> list[str]:
    return [
        '_pickle_all(spec)',
        '[s == spec and hash(s) == hash(spec) for s in _pickle_all(spec)]',
        '[s.unflatten(leaves) for s in _pickle_all(spec)]',
        '(copy.copy(spec) == spec, copy.deepcopy(spec) == spec)',
        'repr(copy.deepcopy(spec))',
    ]


def _traversal_exprs() -> list[str]:
    return [
        "spec.traverse(leaves, None, lambda x: ('leaf', x))",
        "spec.traverse(leaves, lambda node: ('node', node), repr)",
        'spec.walk(leaves, lambda t, m, xs: (t.__name__, xs), repr)',
        'spec.walk(leaves)',
        'spec.accessors()',
        'optree.tree_accessors(tree, **KW)',
        'optree.tree_flatten_with_accessor(tree, **KW)',
        '(spec.is_one_level(), spec.one_level())',
        'spec.broadcast_to_common_suffix(bigger_spec)',
        'spec.transform(None, None)',
        'spec.transform(None, lambda s: optree.treespec_tuple([s, s], none_is_leaf=s.none_is_leaf,'
        ' namespace=s.namespace))',
        'spec.transform(lambda s: optree.treespec_list(s.children(), none_is_leaf=s.none_is_leaf,'
        ' namespace=s.namespace) if s.kind == PyTreeKind.TUPLE else s)',
    ]


def _operation_exprs() -> list[str]:
    """In-place maps, accessor maps, partition, transpose, broadcast, reductions, prefix errors."""
    paired = 'optree.tree_map(lambda x: [x, repr(x)], tree, **KW)'
    inner = (
        'optree.tree_structure([0, 0], none_is_leaf=spec.none_is_leaf, namespace=spec.namespace)'
    )
    sizes = 'optree.tree_map(lambda x: len(repr(x)), tree, **KW)'
    return [
        'optree.tree_map_(lambda x: None, tree, **KW) is tree',
        'seen = []\noptree.tree_map_(seen.append, tree, **KW)\nresult = seen',
        'optree.tree_map_with_path_(lambda p, x: None, tree, **KW) is tree',
        'optree.tree_map_with_accessor(lambda a, x: (a, x), tree, **KW)',
        'optree.tree_map_with_accessor(lambda a, x, y: a(tree) == y, tree, tree, **KW)',
        'optree.tree_map_with_accessor_(lambda a, x: None, tree, **KW) is tree',
        'optree.tree_partition(lambda x: isinstance(x, int), tree, **KW)',
        "optree.tree_partition(lambda x: isinstance(x, str), tree, fillvalue='F', **KW)",
        f"optree.tree_transpose(spec, {inner}, {paired}, KW.get('is_leaf'))",
        f"optree.tree_transpose(spec, {inner}, tree, KW.get('is_leaf'))",
        "optree.tree_transpose_map(lambda x: {'a': x, 'b': repr(x)}, tree, **KW)",
        "optree.tree_transpose_map(lambda x: {'a': x, 'b': repr(x)}, tree, "
        "inner_treespec=optree.tree_structure({'a': 0, 'b': 0}, none_is_leaf=spec.none_is_leaf, "
        'namespace=spec.namespace), **KW)',
        'optree.tree_transpose_map(lambda x, y: (x, y), tree, tree, **KW)',
        'optree.tree_transpose_map_with_path(lambda p, x: (p, x), tree, **KW)',
        "optree.tree_transpose_map_with_path(lambda p, x: {'p': p, 'x': x}, tree, **KW)",
        'optree.tree_transpose_map_with_accessor(lambda a, x: [a, x], tree, **KW)',
        'optree.tree_broadcast_prefix(tree, bigger, **KW)',
        'optree.tree_broadcast_prefix(bigger, tree, **KW)',
        'optree.broadcast_prefix(tree, bigger, **KW)',
        'optree.tree_broadcast_common(tree, bigger, **KW)',
        'optree.tree_broadcast_common(bigger, tree, **KW)',
        'optree.broadcast_common(tree, bigger, **KW)',
        'optree.tree_broadcast_map(lambda x, y: (x, y), tree, bigger, **KW)',
        'optree.tree_broadcast_map(lambda x, y, z: (x, z), bigger, tree, tree, **KW)',
        'optree.tree_broadcast_map_with_path(lambda p, x, y: (p, y), tree, bigger, **KW)',
        'optree.tree_broadcast_map_with_accessor(lambda a, x, y: (a, x), tree, bigger, **KW)',
        '[e("in_axes") for e in optree.prefix_errors(tree, bigger, **KW)]',
        '[e("in_axes") for e in optree.prefix_errors(bigger, tree, **KW)]',
        '[e("x") for e in optree.prefix_errors(tree, [tree], **KW)]',
        '[e("x") for e in optree.prefix_errors([tree, tree], (tree, tree), **KW)]',
        'optree.tree_reduce(lambda a, b: (a, b), tree, **KW)',
        "optree.tree_reduce(lambda a, b: (a, b), tree, 'init', **KW)",
        f'optree.tree_sum({sizes}, **KW)',
        f'optree.tree_sum({sizes}, 100, **KW)',
        'optree.tree_sum(optree.tree_map(lambda x: [repr(x)], tree, **KW), [], **KW)',
        f'optree.tree_max({sizes}, **KW)',
        f'optree.tree_max({sizes}, default=-1, key=lambda x: -x, **KW)',
        f'optree.tree_min({sizes}, **KW)',
        f"optree.tree_min({sizes}, default='D', **KW)",
        'optree.tree_max(tree, **KW)',
        '(optree.tree_all(tree, **KW), optree.tree_any(tree, **KW))',
        f'(optree.tree_all({sizes}, **KW), optree.tree_any({sizes}, **KW))',
        # The same through optree.pytree's short names.
        'optree.pytree.flatten(tree, **KW) == optree.tree_flatten(tree, **KW)',
        'optree.pytree.map(repr, tree, **KW)',
        'optree.pytree.reduce(lambda a, b: (a, b), tree, None, **KW)',
    ]


def _treespec_function_exprs() -> list[str]:
    """The functional treespec API, and accessors taken apart."""
    return [
        'optree.treespec_paths(spec)',
        'optree.treespec_accessors(spec)',
        'optree.treespec_entries(spec)',
        '[optree.treespec_entry(spec, i) for i in range(spec.num_children)]',
        'optree.treespec_entry(spec, spec.num_children)',
        'optree.treespec_entry(spec, -1)',
        'optree.treespec_children(spec)',
        '[optree.treespec_child(spec, i) for i in range(spec.num_children)]',
        'optree.treespec_child(spec, spec.num_children)',
        'optree.treespec_child(spec, -1)',
        'optree.treespec_one_level(spec)',
        'optree.treespec_transform(spec, None, None)',
        'optree.treespec_transform(spec, lambda s: s, lambda s: s) == spec',
        '(optree.treespec_is_leaf(spec), optree.treespec_is_leaf(spec, strict=False), '
        'optree.treespec_is_strict_leaf(spec), optree.treespec_is_one_level(spec))',
        '(optree.treespec_is_prefix(spec, bigger_spec), '
        'optree.treespec_is_prefix(spec, bigger_spec, strict=True), '
        'optree.treespec_is_suffix(bigger_spec, spec), '
        'optree.treespec_is_suffix(spec, spec, strict=True))',
        '[a(tree) for a in spec.accessors()]',
        '[a(tree) for a in spec.accessors()] == leaves',
        "[a.codify('tree') for a in spec.accessors()]",
        '[a.codify() for a in spec.accessors()]',
        '[(len(a), a.path, [type(e).__name__ for e in a]) for a in spec.accessors()]',
        '[[(e.entry, e.type, e.kind, e.codify("n")) for e in a] for a in spec.accessors()]',
        '[(a[:1], a[1:], a[-1] if a else None) for a in spec.accessors()]',
        '[a + a for a in spec.accessors()]',
        '[(a == optree.PyTreeAccessor(tuple(a)), hash(a) == hash(optree.PyTreeAccessor(tuple(a))))'
        ' for a in spec.accessors()]',
        '[a[0](tree) if len(a) else None for a in spec.accessors()]',
        'spec.accessors() == optree.tree_accessors(bigger, is_leaf=lambda x: '
        "isinstance(x, list) and len(x) == 2 and isinstance(x[1], dict) and 'k' in x[1], "
        'none_is_leaf=spec.none_is_leaf, namespace=spec.namespace)',
    ]


# The expressions compared for every zoo tree, in groups (one test per group).
PROPERTY_GROUPS: dict[str, list[str]] = {
    'flatten': _flatten_exprs(),
    'unflatten': _unflatten_exprs(),
    'treespec': _treespec_exprs(),
    'relations': _relation_exprs(),
    'pickle': _pickle_exprs(),
    'traversal': _traversal_exprs(),
    'operations': _operation_exprs(),
    'treespec-functions': _treespec_function_exprs(),
}

# Groups whose exception messages are compared too (the others compare exception types).
MESSAGE_GROUPS = frozenset({'operations', 'treespec-functions'})

PROPERTY_EXPRS: list[str] = [expr for group in PROPERTY_GROUPS.values() for expr in group]

# A smaller set for generated trees.
QUICK_EXPRS: list[str] = [
    'optree.tree_flatten(tree, **KW)',
    'optree.tree_flatten_with_path(tree, **KW)',
    'optree.tree_map(repr, tree, **KW)',
    'optree.tree_flatten_one_level(tree, **KW)',
    "optree.tree_replace_nones('N', tree, **NS)",
    '_rebuild(tree, **KW)',
    '(spec.num_leaves, spec.num_nodes, spec.num_children, spec.kind, spec.type, len(spec))',
    'spec.children()',
    'spec.entries()',
    '(spec.is_prefix(bigger_spec), spec.is_suffix(bigger_spec), bigger_spec.is_prefix(spec))',
    'spec.flatten_up_to(bigger)',
    '(spec == optree.tree_structure(tree, **KW), spec < bigger_spec, spec <= bigger_spec)',
    'hash(spec) == hash(optree.tree_structure(tree, **KW))',
    '[s == spec for s in _pickle_all(spec)]',
    '_pickle_all(spec)[-1]',
    'spec.compose(optree.tree_structure((1, [2]), none_is_leaf=spec.none_is_leaf))',
    'optree.tree_flatten_with_accessor(tree, **KW)',
    "[a.codify('t') for a in spec.accessors()]",
    'optree.tree_partition(lambda x: isinstance(x, int), tree, **KW)',
    "optree.tree_transpose_map(lambda x: {'a': x, 'b': [x]}, tree, **KW)",
    'optree.tree_broadcast_common(tree, bigger, **KW)',
    'optree.tree_broadcast_map(lambda x, y: (x, y), bigger, tree, **KW)',
    '[e("p") for e in optree.prefix_errors(bigger, tree, **KW)]',
    'optree.tree_reduce(lambda a, b: (a, b), tree, **KW)',
    'optree.tree_max(optree.tree_map(lambda x: len(repr(x)), tree, **KW), default=0, **KW)',
    '(optree.tree_all(tree, **KW), optree.tree_any(tree, **KW))',
    '(optree.treespec_is_one_level(spec), optree.treespec_one_level(spec))',
]
