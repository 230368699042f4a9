"""What each library calls every benchmarked operation, as a statement to time.

A case is one statement (like ``timeit``'s) plus the names it uses, so every library pays the
same, minimal Python overhead around its call: ``_suite.py`` compiles the statement into an
unrolled timing loop. An operation a library has no equivalent for is ``NotAvailable`` with
the reason, and shows as N/A in the report; so do all operations on a tree the library cannot
represent (``Library.unsupported``: the :mod:`optree.dataclasses` model outside optree, classes
registered with Python callbacks in dm-tree).

Libraries are imported only when asked for, since each lives in its own virtualenv: ours and
optree 0.20.0 both import as ``optree``.
"""

from __future__ import annotations

import operator
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trees

# (key, label), in report order.
OPERATIONS: tuple[tuple[str, str], ...] = (
    ('tree_flatten', 'tree_flatten'),
    ('tree_unflatten', 'tree_unflatten'),
    ('tree_leaves', 'tree_leaves'),
    ('tree_structure', 'tree_structure'),
    ('tree_map', 'tree_map, 1 tree'),
    ('tree_map_3', 'tree_map, 3 trees'),
    ('tree_flatten_with_path', 'tree_flatten_with_path'),
    ('tree_map_with_path', 'tree_map_with_path'),
    ('treespec_eq', 'treespec =='),
    ('treespec_hash', 'treespec hash'),
    ('treespec_pickle', 'treespec pickle round trip'),
    ('flatten_up_to', 'flatten_up_to'),
)

# The libraries, in report order: (key, label, import name).
LIBRARIES: tuple[tuple[str, str, str], ...] = (
    ('ours', 'ours', 'optree'),
    ('optree-0.20.0', 'optree 0.20.0', 'optree'),
    ('jax', 'jax.tree_util', 'jax'),
    ('torch', 'torch.utils._pytree', 'torch'),
    ('dm-tree', 'dm-tree', 'tree'),
)


def path_identity(path: Any, leaf: Any) -> Any:
    return leaf


NO_DATACLASSES = 'no optree.dataclasses (the model is optree-specific)'


@dataclass
class Case:
    """One timed statement: ``stmt`` evaluated with ``names`` bound."""

    stmt: str
    names: dict[str, Any] = field(default_factory=dict)
    impl: str = ''  # what the library calls, when it is not the operation's own name


@dataclass
class NotAvailable:
    reason: str


Cases = dict[str, Case | NotAvailable]


class Library:
    key: str
    pair: Callable[[Any, Any], Any] = trees.Pair

    def version(self) -> str:
        raise NotImplementedError

    def unsupported(self, shape: trees.TreeShape) -> str | None:
        """Why this library cannot build ``shape``'s tree, or None."""
        return None

    def cases_for(self, shape: trees.TreeShape) -> Cases:
        """The cases of the operations timed on ``shape``; all N/A where it is unsupported."""
        reason = self.unsupported(shape)
        if reason is not None:
            cases: Cases = {op: NotAvailable(reason) for op, _ in OPERATIONS}
        else:
            cases = self.cases(shape)
        if shape.operations is None:
            return cases
        return {op: case for op, case in cases.items() if op in shape.operations}

    def cases(self, shape: trees.TreeShape) -> Cases:
        raise NotImplementedError

    def leaves(self, tree: Any) -> list[Any]:
        raise NotImplementedError


def _common_names(tree: Any, others: tuple[Any, Any]) -> dict[str, Any]:
    return {
        'tree': tree,
        'tree2': others[0],
        'tree3': others[1],
        'f1': abs,
        'f3': max,
        'fp': path_identity,
        'dumps': pickle.dumps,
        'loads': pickle.loads,
        'eq': operator.eq,
    }


def point_flatten(point: trees.Point) -> tuple[tuple[Any, Any], str, tuple[str, str]]:
    return (point.x, point.y), point.unit, ('x', 'y')


def point_unflatten(unit: str, children: Any) -> trees.Point:
    x, y = children
    return trees.Point(x, y, unit)


class OptreeLibrary(Library):
    """Ours and optree 0.20.0: the same API, so the same statements."""

    NAMESPACE = 'bench'
    # Trees with nodes registered in NAMESPACE, which the calls must name.
    NAMESPACED_SHAPES = ('custom', 'pycustom', 'dcmodel')

    def __init__(self, key: str) -> None:
        import optree

        self.key = key
        self.optree = optree
        optree.register_pytree_node(
            trees.Pair,
            lambda pair: ((pair.left, pair.right), None),
            lambda _, children: trees.Pair(*children),
            namespace=self.NAMESPACE,
        )
        # flatten returns (children, metadata, entries), as optree allows.
        optree.register_pytree_node(
            trees.Point, point_flatten, point_unflatten, namespace=self.NAMESPACE
        )

    def version(self) -> str:
        return self.optree.__version__

    def _kwargs(self, shape: trees.TreeShape) -> str:
        # Custom nodes are registered in a namespace, as optree requires.
        return ', namespace=ns' if shape.name in self.NAMESPACED_SHAPES else ''

    def leaves(self, tree: Any) -> list[Any]:
        return self.optree.tree_leaves(tree, namespace=self.NAMESPACE)

    def cases(self, shape: trees.TreeShape) -> Cases:
        ot = self.optree
        kw = self._kwargs(shape)
        tree = shape.build(self.pair)
        others = (shape.build(self.pair), shape.build(self.pair))
        leaves, spec = ot.tree_flatten(tree, namespace=self.NAMESPACE)
        names = _common_names(tree, others) | {
            'ns': self.NAMESPACE,
            'leaves': leaves,
            'spec': spec,
            'spec2': ot.tree_structure(others[0], namespace=self.NAMESPACE),
            'tree_flatten': ot.tree_flatten,
            'tree_unflatten': ot.tree_unflatten,
            'tree_leaves': ot.tree_leaves,
            'tree_structure': ot.tree_structure,
            'tree_map': ot.tree_map,
            'tree_flatten_with_path': ot.tree_flatten_with_path,
            'tree_map_with_path': ot.tree_map_with_path,
        }
        return {
            'tree_flatten': Case(f'tree_flatten(tree{kw})', names),
            'tree_unflatten': Case('tree_unflatten(spec, leaves)', names),
            'tree_leaves': Case(f'tree_leaves(tree{kw})', names),
            'tree_structure': Case(f'tree_structure(tree{kw})', names),
            'tree_map': Case(f'tree_map(f1, tree{kw})', names),
            'tree_map_3': Case(f'tree_map(f3, tree, tree2, tree3{kw})', names),
            'tree_flatten_with_path': Case(f'tree_flatten_with_path(tree{kw})', names),
            'tree_map_with_path': Case(f'tree_map_with_path(fp, tree{kw})', names),
            'treespec_eq': Case('spec == spec2', names),
            'treespec_hash': Case('hash(spec)', names),
            'treespec_pickle': Case('loads(dumps(spec))', names),
            'flatten_up_to': Case('spec.flatten_up_to(tree)', names, 'PyTreeSpec.flatten_up_to'),
        }


class JaxLibrary(Library):
    key = 'jax'

    def __init__(self) -> None:
        import jax
        import jax.tree_util as jtu

        self.jax = jax
        self.jtu = jtu
        jtu.register_pytree_node(
            trees.Pair,
            lambda pair: ((pair.left, pair.right), None),
            lambda _, children: trees.Pair(*children),
        )
        jtu.register_pytree_with_keys(
            trees.Point,
            lambda p: (((jtu.GetAttrKey('x'), p.x), (jtu.GetAttrKey('y'), p.y)), p.unit),
            point_unflatten,
            lambda p: ((p.x, p.y), p.unit),
        )

    def version(self) -> str:
        return self.jax.__version__

    def unsupported(self, shape: trees.TreeShape) -> str | None:
        return NO_DATACLASSES if shape.name == 'dcmodel' else None

    def leaves(self, tree: Any) -> list[Any]:
        return self.jtu.tree_leaves(tree)

    def cases(self, shape: trees.TreeShape) -> Cases:
        jtu = self.jtu
        tree = shape.build(self.pair)
        others = (shape.build(self.pair), shape.build(self.pair))
        leaves, treedef = jtu.tree_flatten(tree)
        names = _common_names(tree, others) | {
            'leaves': leaves,
            'spec': treedef,
            'spec2': jtu.tree_structure(others[0]),
            'tree_flatten': jtu.tree_flatten,
            'tree_unflatten': jtu.tree_unflatten,
            'tree_leaves': jtu.tree_leaves,
            'tree_structure': jtu.tree_structure,
            'tree_map': jtu.tree_map,
            'tree_flatten_with_path': jtu.tree_flatten_with_path,
            'tree_map_with_path': jtu.tree_map_with_path,
        }
        return {
            'tree_flatten': Case('tree_flatten(tree)', names),
            'tree_unflatten': Case('tree_unflatten(spec, leaves)', names),
            'tree_leaves': Case('tree_leaves(tree)', names),
            'tree_structure': Case('tree_structure(tree)', names),
            'tree_map': Case('tree_map(f1, tree)', names),
            'tree_map_3': Case('tree_map(f3, tree, tree2, tree3)', names),
            'tree_flatten_with_path': Case('tree_flatten_with_path(tree)', names),
            'tree_map_with_path': Case('tree_map_with_path(fp, tree)', names),
            'treespec_eq': Case('spec == spec2', names, 'PyTreeDef =='),
            'treespec_hash': Case('hash(spec)', names, 'hash(PyTreeDef)'),
            'treespec_pickle': Case('loads(dumps(spec))', names, 'pickle PyTreeDef'),
            'flatten_up_to': Case('spec.flatten_up_to(tree)', names, 'PyTreeDef.flatten_up_to'),
        }


class TorchLibrary(Library):
    """``torch.utils._pytree``: the pure-Python implementation."""

    key = 'torch'

    def __init__(self) -> None:
        import torch
        import torch.utils._pytree as pytree

        self.torch = torch
        self.pytree = pytree
        pytree.register_pytree_node(
            trees.Pair,
            lambda pair: ([pair.left, pair.right], None),
            lambda children, _: trees.Pair(*children),
            serialized_type_name='trees.Pair',
            flatten_with_keys_fn=lambda pair: (
                [(pytree.GetAttrKey('left'), pair.left), (pytree.GetAttrKey('right'), pair.right)],
                None,
            ),
        )
        pytree.register_pytree_node(
            trees.Point,
            lambda p: ([p.x, p.y], p.unit),
            lambda children, unit: point_unflatten(unit, children),
            serialized_type_name='trees.Point',
            flatten_with_keys_fn=lambda p: (
                [(pytree.GetAttrKey('x'), p.x), (pytree.GetAttrKey('y'), p.y)],
                p.unit,
            ),
        )

    def version(self) -> str:
        return str(self.torch.__version__)

    def unsupported(self, shape: trees.TreeShape) -> str | None:
        return NO_DATACLASSES if shape.name == 'dcmodel' else None

    def leaves(self, tree: Any) -> list[Any]:
        return self.pytree.tree_leaves(tree)

    def cases(self, shape: trees.TreeShape) -> Cases:
        pt = self.pytree
        tree = shape.build(self.pair)
        others = (shape.build(self.pair), shape.build(self.pair))
        leaves, spec = pt.tree_flatten(tree)
        names = _common_names(tree, others) | {
            'leaves': leaves,
            'spec': spec,
            'spec2': pt.tree_structure(others[0]),
            'tree_flatten': pt.tree_flatten,
            'tree_unflatten': pt.tree_unflatten,
            'tree_leaves': pt.tree_leaves,
            'tree_structure': pt.tree_structure,
            'tree_map': pt.tree_map,
            'tree_flatten_with_path': pt.tree_flatten_with_path,
            'tree_map_with_path': pt.tree_map_with_path,
        }
        cases: Cases = {
            'tree_flatten': Case('tree_flatten(tree)', names),
            'tree_unflatten': Case('tree_unflatten(leaves, spec)', names),
            'tree_leaves': Case('tree_leaves(tree)', names),
            'tree_structure': Case('tree_structure(tree)', names),
            'tree_map': Case('tree_map(f1, tree)', names),
            'tree_map_3': Case('tree_map(f3, tree, tree2, tree3)', names),
            'tree_flatten_with_path': Case('tree_flatten_with_path(tree)', names),
            'tree_map_with_path': Case('tree_map_with_path(fp, tree)', names),
            'treespec_eq': Case('spec == spec2', names, 'TreeSpec =='),
            'treespec_hash': Case('hash(spec)', names, 'hash(TreeSpec)'),
            'treespec_pickle': Case('loads(dumps(spec))', names, 'pickle TreeSpec'),
        }
        if hasattr(spec, 'flatten_up_to'):
            cases['flatten_up_to'] = Case(
                'spec.flatten_up_to(tree)', names, 'TreeSpec.flatten_up_to'
            )
        else:
            cases['flatten_up_to'] = NotAvailable('no TreeSpec.flatten_up_to in this version')
        return cases


class DmTreeLibrary(Library):
    """dm-tree has no treespec object: functions take a tree that stands for the structure."""

    key = 'dm-tree'

    def __init__(self) -> None:
        import attr
        import tree as dm_tree

        self.dm_tree = dm_tree

        # dm-tree has no registration API; its own way to add a node type is an attrs class.
        @attr.s(slots=True, eq=True)
        class AttrsPair:
            left = attr.ib()
            right = attr.ib()

        self.pair = AttrsPair

    def version(self) -> str:
        from importlib.metadata import version

        return version('dm-tree')

    def unsupported(self, shape: trees.TreeShape) -> str | None:
        if shape.name == 'dcmodel':
            return NO_DATACLASSES
        if shape.name == 'pycustom':
            return 'dm-tree has no registration of Python flatten/unflatten callbacks'
        return None

    def leaves(self, tree: Any) -> list[Any]:
        return self.dm_tree.flatten(tree)

    def cases(self, shape: trees.TreeShape) -> Cases:
        dt = self.dm_tree
        tree = shape.build(self.pair)
        others = (shape.build(self.pair), shape.build(self.pair))
        no_spec = NotAvailable('dm-tree has no treespec object')
        names = _common_names(tree, others) | {
            'leaves': dt.flatten(tree),
            'flatten': dt.flatten,
            'unflatten_as': dt.unflatten_as,
            'map_structure': dt.map_structure,
            'flatten_with_path': dt.flatten_with_path,
            'map_structure_with_path': dt.map_structure_with_path,
            'flatten_up_to': dt.flatten_up_to,
        }
        return {
            'tree_flatten': Case('flatten(tree)', names, 'tree.flatten (leaves only)'),
            'tree_unflatten': Case(
                'unflatten_as(tree2, leaves)', names, 'tree.unflatten_as (a tree as the structure)'
            ),
            'tree_leaves': Case('flatten(tree)', names, 'tree.flatten'),
            'tree_structure': no_spec,
            'tree_map': Case('map_structure(f1, tree)', names, 'tree.map_structure'),
            'tree_map_3': Case(
                'map_structure(f3, tree, tree2, tree3)', names, 'tree.map_structure'
            ),
            'tree_flatten_with_path': Case(
                'flatten_with_path(tree)', names, 'tree.flatten_with_path (paths and leaves)'
            ),
            'tree_map_with_path': Case(
                'map_structure_with_path(fp, tree)', names, 'tree.map_structure_with_path'
            ),
            'treespec_eq': no_spec,
            'treespec_hash': no_spec,
            'treespec_pickle': no_spec,
            'flatten_up_to': Case(
                'flatten_up_to(tree2, tree)', names, 'tree.flatten_up_to (a tree as the structure)'
            ),
        }


def load(key: str) -> Library:
    """The adapter for ``key``; raises ImportError if the library is not installed here."""
    if key in ('ours', 'optree-0.20.0'):
        return OptreeLibrary(key)
    if key == 'jax':
        return JaxLibrary()
    if key == 'torch':
        return TorchLibrary()
    if key == 'dm-tree':
        return DmTreeLibrary()
    raise ValueError(f'unknown library {key!r}')
