"""Operations on pytrees: flatten, unflatten, map, reduce, transpose, broadcast and treespecs.

Every hot-path function is a thin wrapper around one call into ``optree._C``.
"""

from __future__ import annotations

import builtins
import difflib
import functools
import itertools
import sys
import textwrap
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Generic, SupportsIndex, SupportsInt, overload

import optree._C as _C
from optree._C import PyTreeIter as _PyTreeIter
from optree._C import (
    _flatten,
    _flatten_with_path,
    _is_leaf,
    _leaves,
    _map_leaves,
    _map_matched,
    _structure,
)
from optree._C import make_from_collection as _make_from_collection
from optree.accessors import PyTreeAccessor
from optree.registry import register_pytree_node
from optree.typing import NamedTuple, T, is_namedtuple_instance, is_structseq_instance
from optree.utils import total_order_sorted

if TYPE_CHECKING:
    from optree.accessors import PyTreeEntry
    from optree.typing import (
        MetaData,
        PyTree,
        PyTreeKind,
        PyTreeSpec,
        S,
        StructSequence,
        U,
        UnflattenFunc,
    )

__all__ = [  # noqa: RUF022 (same order as optree)
    'MAX_RECURSION_DEPTH',
    'NONE_IS_NODE',
    'NONE_IS_LEAF',
    'tree_flatten',
    'tree_flatten_with_path',
    'tree_flatten_with_accessor',
    'tree_unflatten',
    'tree_iter',
    'tree_leaves',
    'tree_structure',
    'tree_paths',
    'tree_accessors',
    'tree_is_leaf',
    'all_leaves',
    'tree_map',
    'tree_map_',
    'tree_map_with_path',
    'tree_map_with_path_',
    'tree_map_with_accessor',
    'tree_map_with_accessor_',
    'tree_replace_nones',
    'tree_partition',
    'tree_transpose',
    'tree_transpose_map',
    'tree_transpose_map_with_path',
    'tree_transpose_map_with_accessor',
    'tree_broadcast_prefix',
    'broadcast_prefix',
    'tree_broadcast_common',
    'broadcast_common',
    'tree_broadcast_map',
    'tree_broadcast_map_with_path',
    'tree_broadcast_map_with_accessor',
    'tree_reduce',
    'tree_sum',
    'tree_max',
    'tree_min',
    'tree_all',
    'tree_any',
    'tree_flatten_one_level',
    'treespec_paths',
    'treespec_accessors',
    'treespec_entries',
    'treespec_entry',
    'treespec_children',
    'treespec_child',
    'treespec_one_level',
    'treespec_transform',
    'treespec_is_leaf',
    'treespec_is_strict_leaf',
    'treespec_is_one_level',
    'treespec_is_prefix',
    'treespec_is_suffix',
    'treespec_leaf',
    'treespec_none',
    'treespec_tuple',
    'treespec_list',
    'treespec_dict',
    'treespec_namedtuple',
    'treespec_ordereddict',
    'treespec_defaultdict',
    'treespec_deque',
    'treespec_structseq',
    'treespec_frozendict',
    'treespec_from_collection',
    'prefix_errors',
]

MAX_RECURSION_DEPTH: int = _C.MAX_RECURSION_DEPTH
"""Deepest nesting a traversal accepts before raising :exc:`RecursionError`."""
NONE_IS_NODE: bool = False
"""Value of ``none_is_leaf`` that makes :data:`None` a node without children (the default)."""
NONE_IS_LEAF: bool = True
"""Value of ``none_is_leaf`` that makes :data:`None` a leaf."""

_HAS_FROZENDICT: bool = sys.version_info >= (3, 15) and bool(_C.OPTREE_HAS_FROZENDICT)

# What the map functions pass to func before each leaf (optree._C._map_leaves).
_PLAIN: int = _C._MAP_PLAIN
_WITH_PATH: int = _C._MAP_WITH_PATH
_WITH_ACCESSOR: int = _C._MAP_WITH_ACCESSOR


# --- flatten / unflatten ---------------------------------------------------------------------


def tree_flatten(
    tree: PyTree[T],
    /,
    is_leaf: Callable[[T], bool] | None = None,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> tuple[list[T], PyTreeSpec]:
    """Flatten a pytree into its leaves (left to right) and its structure.

    Args:
        tree: The pytree to flatten.
        is_leaf: Optional predicate; a subtree for which it returns true is taken as a leaf.
        none_is_leaf: Treat :data:`None` as a leaf instead of an empty node.
        namespace: Registry namespace of custom node types (the global one is always used).

    Returns:
        ``(leaves, treespec)``.
    """
    return _flatten(tree, is_leaf, none_is_leaf, namespace)


def tree_flatten_with_path(
    tree: PyTree[T],
    /,
    is_leaf: Callable[[T], bool] | None = None,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> tuple[list[tuple[Any, ...]], list[T], PyTreeSpec]:
    """Flatten a pytree, also returning the path (tuple of entries) of every leaf."""
    return _flatten_with_path(tree, is_leaf, none_is_leaf, namespace)


def tree_flatten_with_accessor(
    tree: PyTree[T],
    /,
    is_leaf: Callable[[T], bool] | None = None,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> tuple[list[PyTreeAccessor], list[T], PyTreeSpec]:
    """Flatten a pytree, also returning a :class:`PyTreeAccessor` for every leaf."""
    leaves, treespec = _flatten(tree, is_leaf, none_is_leaf, namespace)
    return treespec.accessors(), leaves, treespec


def tree_unflatten(treespec: PyTreeSpec, leaves: Iterable[T]) -> PyTree[T]:
    """Rebuild a pytree of structure ``treespec`` from ``leaves``."""
    return treespec.unflatten(leaves)


def tree_iter(
    tree: PyTree[T],
    /,
    is_leaf: Callable[[T], bool] | None = None,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> Iterable[T]:
    """Return a lazy iterator over the leaves of a pytree."""
    return _PyTreeIter(tree, is_leaf, none_is_leaf, namespace)


def tree_leaves(
    tree: PyTree[T],
    /,
    is_leaf: Callable[[T], bool] | None = None,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> list[T]:
    """Return the leaves of a pytree, left to right."""
    return _leaves(tree, is_leaf, none_is_leaf, namespace)


def tree_structure(
    tree: PyTree[T],
    /,
    is_leaf: Callable[[T], bool] | None = None,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> PyTreeSpec:
    """Return the structure (:class:`PyTreeSpec`) of a pytree."""
    return _structure(tree, is_leaf, none_is_leaf, namespace)


def tree_paths(
    tree: PyTree[T],
    /,
    is_leaf: Callable[[T], bool] | None = None,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> list[tuple[Any, ...]]:
    """Return the paths of the leaves of a pytree."""
    return _flatten_with_path(tree, is_leaf, none_is_leaf, namespace)[0]


def tree_accessors(
    tree: PyTree[T],
    /,
    is_leaf: Callable[[T], bool] | None = None,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> list[PyTreeAccessor]:
    """Return the accessors of the leaves of a pytree."""
    return _flatten(tree, is_leaf, none_is_leaf, namespace)[1].accessors()


def tree_is_leaf(
    tree: PyTree[T],
    /,
    is_leaf: Callable[[T], bool] | None = None,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> bool:
    """Return whether ``tree`` itself is a leaf."""
    return _is_leaf(tree, is_leaf, none_is_leaf, namespace)  # type: ignore[arg-type]


def all_leaves(
    iterable: Iterable[PyTree[T]],
    /,
    is_leaf: Callable[[T], bool] | None = None,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> bool:
    """Return whether every item of ``iterable`` is a leaf."""
    for item in iterable:
        if not _is_leaf(item, is_leaf, none_is_leaf, namespace):  # type: ignore[arg-type]
            return False
    return True


# --- map ---------------------------------------------------------------------------------------


def tree_map(
    func: Callable[..., U],
    tree: PyTree[T],
    /,
    *rests: PyTree[S],
    is_leaf: Callable[[T], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> PyTree[U]:
    """Apply ``func`` to the leaves of ``tree`` (and the matching subtrees of ``rests``).

    Every tree of ``rests`` must have ``tree``'s structure as a prefix of its own; the
    corresponding subtrees are passed as extra arguments. Returns a tree of ``tree``'s structure.
    """
    return _map_leaves(func, tree, rests, is_leaf, none_is_leaf, namespace, _PLAIN, True)


def tree_map_(
    func: Callable[..., Any],
    tree: PyTree[T],
    /,
    *rests: PyTree[S],
    is_leaf: Callable[[T], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> PyTree[T]:
    """Like :func:`tree_map`, for side effects only: return ``tree`` itself."""
    return _map_leaves(func, tree, rests, is_leaf, none_is_leaf, namespace, _PLAIN, False)


def tree_map_with_path(
    func: Callable[..., U],
    tree: PyTree[T],
    /,
    *rests: PyTree[S],
    is_leaf: Callable[[T], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> PyTree[U]:
    """Like :func:`tree_map`, passing each leaf's path as the first argument of ``func``."""
    return _map_leaves(func, tree, rests, is_leaf, none_is_leaf, namespace, _WITH_PATH, True)


def tree_map_with_path_(
    func: Callable[..., Any],
    tree: PyTree[T],
    /,
    *rests: PyTree[S],
    is_leaf: Callable[[T], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> PyTree[T]:
    """Like :func:`tree_map_with_path`, for side effects only: return ``tree`` itself."""
    return _map_leaves(func, tree, rests, is_leaf, none_is_leaf, namespace, _WITH_PATH, False)


def tree_map_with_accessor(
    func: Callable[..., U],
    tree: PyTree[T],
    /,
    *rests: PyTree[S],
    is_leaf: Callable[[T], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> PyTree[U]:
    """Like :func:`tree_map`, passing each leaf's accessor as the first argument of ``func``."""
    return _map_leaves(func, tree, rests, is_leaf, none_is_leaf, namespace, _WITH_ACCESSOR, True)


def tree_map_with_accessor_(
    func: Callable[..., Any],
    tree: PyTree[T],
    /,
    *rests: PyTree[S],
    is_leaf: Callable[[T], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> PyTree[T]:
    """Like :func:`tree_map_with_accessor`, for side effects only: return ``tree`` itself."""
    return _map_leaves(func, tree, rests, is_leaf, none_is_leaf, namespace, _WITH_ACCESSOR, False)


def tree_replace_nones(
    sentinel: S,
    tree: PyTree[T | None],
    /,
    namespace: str = '',
) -> PyTree[T | S]:
    """Replace every :data:`None` in ``tree`` with ``sentinel``."""
    if tree is None:
        return sentinel  # type: ignore[unreachable]
    leaves, treespec = _flatten(tree, None, True, namespace)
    return treespec.unflatten([sentinel if leaf is None else leaf for leaf in leaves])


@overload
def tree_partition(
    predicate: Callable[[T], bool],
    tree: PyTree[T],
    /,
    is_leaf: Callable[[T], bool] | None = None,
    *,
    fillvalue: None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> tuple[PyTree[T | None], PyTree[T | None]]: ...


@overload
def tree_partition(
    predicate: Callable[[T], bool],
    tree: PyTree[T],
    /,
    is_leaf: Callable[[T], bool] | None = None,
    *,
    fillvalue: S,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> tuple[PyTree[T | S], PyTree[T | S]]: ...


def tree_partition(
    predicate: Callable[[T], bool],
    tree: PyTree[T],
    /,
    is_leaf: Callable[[T], bool] | None = None,
    *,
    fillvalue: S = None,  # type: ignore[assignment]
    none_is_leaf: bool = False,
    namespace: str = '',
) -> tuple[PyTree[T | S], PyTree[T | S]]:
    """Split ``tree`` into two trees of the same structure: leaves where ``predicate`` holds,
    and leaves where it does not; the other positions hold ``fillvalue``.
    """
    leaves, treespec = _flatten(tree, is_leaf, none_is_leaf, namespace)
    kept: list[Any] = []
    rest: list[Any] = []
    for leaf in leaves:
        if predicate(leaf):
            kept.append(leaf)
            rest.append(fillvalue)
        else:
            kept.append(fillvalue)
            rest.append(leaf)
    return treespec.unflatten(kept), treespec.unflatten(rest)


# --- transpose ---------------------------------------------------------------------------------


def tree_transpose(
    outer_treespec: PyTreeSpec,
    inner_treespec: PyTreeSpec,
    tree: PyTree[T],
    /,
    is_leaf: Callable[[T], bool] | None = None,
) -> PyTree[T]:
    """Turn a tree of structure ``outer(inner)`` into one of structure ``inner(outer)``."""
    if outer_treespec.none_is_leaf != inner_treespec.none_is_leaf:
        raise ValueError('Tree structures must have the same none_is_leaf value.')
    outer_size = outer_treespec.num_leaves
    inner_size = inner_treespec.num_leaves
    if outer_size == 0 or inner_size == 0:
        raise ValueError('Tree structures must have at least one leaf.')
    outer_ns = outer_treespec.namespace
    inner_ns = inner_treespec.namespace
    if outer_ns and inner_ns and outer_ns != inner_ns:
        raise ValueError(
            f'Tree structures must have the same namespace, got {outer_ns!r} vs. {inner_ns!r}.',
        )

    leaves, treespec = _flatten(
        tree,
        is_leaf,
        outer_treespec.none_is_leaf,
        outer_ns or inner_ns,
    )
    if treespec.num_leaves != outer_size * inner_size:
        expected = outer_treespec.compose(inner_treespec)
        raise TypeError(f'Tree structure mismatch; expected: {expected}, got: {treespec}.')

    columns = [leaves[i::inner_size] for i in range(inner_size)]
    return inner_treespec.unflatten(map(outer_treespec.unflatten, columns))  # type: ignore[arg-type]


def _transpose_outputs(
    outputs: list[Any],
    outer_treespec: PyTreeSpec,
    inner_treespec: PyTreeSpec | None,
    is_leaf: Callable[[Any], bool] | None,
    none_is_leaf: bool,
    namespace: str,
) -> Any:
    if inner_treespec is None:
        inner_treespec = _flatten(outputs[0], is_leaf, none_is_leaf, namespace)[1]
    if inner_treespec.num_leaves == 0:
        raise ValueError(f'The inner structure must have at least one leaf. Got: {inner_treespec}.')
    rows = [inner_treespec.flatten_up_to(output) for output in outputs]
    columns: Iterable[Any] = zip(*rows, strict=True) if rows else [()] * inner_treespec.num_leaves
    return inner_treespec.unflatten(map(outer_treespec.unflatten, columns))


def _check_outer(outer_treespec: PyTreeSpec, inner_treespec: PyTreeSpec | None, /) -> None:
    if inner_treespec is None and outer_treespec.num_leaves == 0:
        raise ValueError(f'The outer structure must have at least one leaf. Got: {outer_treespec}.')


def tree_transpose_map(
    func: Callable[..., PyTree[U]],
    tree: PyTree[T],
    /,
    *rests: PyTree[S],
    inner_treespec: PyTreeSpec | None = None,
    is_leaf: Callable[[T], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> PyTree[U]:
    """Map ``func`` over the leaves and transpose the result (outer structure inside).

    The inner structure is ``inner_treespec`` or the structure of the first output.
    """
    leaves, outer_treespec = _flatten(tree, is_leaf, none_is_leaf, namespace)
    _check_outer(outer_treespec, inner_treespec)
    flat_rests = [outer_treespec.flatten_up_to(r) for r in rests]
    outputs = list(map(func, leaves, *flat_rests))
    return _transpose_outputs(  # type: ignore[no-any-return]
        outputs,
        outer_treespec,
        inner_treespec,
        is_leaf,
        none_is_leaf,
        namespace,
    )


def tree_transpose_map_with_path(
    func: Callable[..., PyTree[U]],
    tree: PyTree[T],
    /,
    *rests: PyTree[S],
    inner_treespec: PyTreeSpec | None = None,
    is_leaf: Callable[[T], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> PyTree[U]:
    """Like :func:`tree_transpose_map`, passing each leaf's path first."""
    paths, leaves, outer_treespec = _flatten_with_path(tree, is_leaf, none_is_leaf, namespace)
    _check_outer(outer_treespec, inner_treespec)
    flat_rests = [outer_treespec.flatten_up_to(r) for r in rests]
    outputs = list(map(func, paths, leaves, *flat_rests))
    return _transpose_outputs(  # type: ignore[no-any-return]
        outputs,
        outer_treespec,
        inner_treespec,
        is_leaf,
        none_is_leaf,
        namespace,
    )


def tree_transpose_map_with_accessor(
    func: Callable[..., PyTree[U]],
    tree: PyTree[T],
    /,
    *rests: PyTree[S],
    inner_treespec: PyTreeSpec | None = None,
    is_leaf: Callable[[T], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> PyTree[U]:
    """Like :func:`tree_transpose_map`, passing each leaf's accessor first."""
    leaves, outer_treespec = _flatten(tree, is_leaf, none_is_leaf, namespace)
    _check_outer(outer_treespec, inner_treespec)
    flat_rests = [outer_treespec.flatten_up_to(r) for r in rests]
    outputs = list(map(func, outer_treespec.accessors(), leaves, *flat_rests))
    return _transpose_outputs(  # type: ignore[no-any-return]
        outputs,
        outer_treespec,
        inner_treespec,
        is_leaf,
        none_is_leaf,
        namespace,
    )


# --- broadcast ---------------------------------------------------------------------------------


def tree_broadcast_prefix(
    prefix_tree: PyTree[T],
    full_tree: PyTree[S],
    /,
    is_leaf: Callable[[T], bool] | None = None,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> PyTree[T]:
    """Repeat each leaf of ``prefix_tree`` over the matching subtree of ``full_tree``.

    The result has the structure of ``full_tree``.
    """

    def expand(value: Any, subtree: Any) -> Any:
        spec = _flatten(subtree, is_leaf, none_is_leaf, namespace)[1]
        return spec.unflatten(itertools.repeat(value, spec.num_leaves))

    return tree_map(
        expand,
        prefix_tree,
        full_tree,
        is_leaf=is_leaf,
        none_is_leaf=none_is_leaf,
        namespace=namespace,
    )


def broadcast_prefix(
    prefix_tree: PyTree[T],
    full_tree: PyTree[S],
    /,
    is_leaf: Callable[[T], bool] | None = None,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> list[T]:
    """Return the leaves of :func:`tree_broadcast_prefix` (``prefix_tree`` over ``full_tree``)."""
    result: list[T] = []

    def extend(value: Any, subtree: Any) -> None:
        spec = _flatten(subtree, is_leaf, none_is_leaf, namespace)[1]
        result.extend(itertools.repeat(value, spec.num_leaves))

    tree_map_(
        extend,
        prefix_tree,
        full_tree,
        is_leaf=is_leaf,
        none_is_leaf=none_is_leaf,
        namespace=namespace,
    )
    return result


def _broadcast_common(
    trees: tuple[Any, ...],
    is_leaf: Callable[[Any], bool] | None,
    none_is_leaf: bool,
    namespace: str,
) -> tuple[list[Any], PyTreeSpec]:
    """Broadcast all ``trees`` to their common suffix structure."""
    flattened = [_flatten(t, is_leaf, none_is_leaf, namespace) for t in trees]
    common: PyTreeSpec = flattened[0][1]
    for _, spec in flattened[1:]:
        common = common.broadcast_to_common_suffix(spec)

    marker = object()
    skeleton = common.unflatten(itertools.repeat(marker, common.num_leaves))

    def expand(value: Any, subtree: Any) -> Any:
        # `subtree` only holds private markers: the user's `is_leaf` must not see it.
        spec = _flatten(subtree, None, none_is_leaf, namespace)[1]
        return spec.unflatten(itertools.repeat(value, spec.num_leaves))

    broadcasted = [
        spec.unflatten(map(expand, leaves, spec.flatten_up_to(skeleton)))
        for leaves, spec in flattened
    ]
    return broadcasted, common


def tree_broadcast_common(
    tree: PyTree[T],
    other_tree: PyTree[T],
    /,
    is_leaf: Callable[[T], bool] | None = None,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> tuple[PyTree[T], PyTree[T]]:
    """Broadcast two trees to their common suffix structure; return both broadcasted trees."""
    (first, second), _ = _broadcast_common((tree, other_tree), is_leaf, none_is_leaf, namespace)
    return first, second


def broadcast_common(
    tree: PyTree[T],
    other_tree: PyTree[T],
    /,
    is_leaf: Callable[[T], bool] | None = None,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> tuple[list[T], list[T]]:
    """Return the leaves of both trees of :func:`tree_broadcast_common`."""
    (first, second), common = _broadcast_common(
        (tree, other_tree),
        is_leaf,
        none_is_leaf,
        namespace,
    )
    return common.flatten_up_to(first), common.flatten_up_to(second)  # type: ignore[return-value]


def tree_broadcast_map(
    func: Callable[..., U],
    tree: PyTree[T],
    /,
    *rests: PyTree[T],
    is_leaf: Callable[[T], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> PyTree[U]:
    """Like :func:`tree_map`, broadcasting all trees to their common suffix structure first."""
    if not rests:
        return tree_map(func, tree, is_leaf=is_leaf, none_is_leaf=none_is_leaf, namespace=namespace)
    trees, common = _broadcast_common((tree, *rests), is_leaf, none_is_leaf, namespace)
    return _map_matched(func, common, tuple(trees), _PLAIN, True)


def tree_broadcast_map_with_path(
    func: Callable[..., U],
    tree: PyTree[T],
    /,
    *rests: PyTree[T],
    is_leaf: Callable[[T], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> PyTree[U]:
    """Like :func:`tree_broadcast_map`, passing each leaf's path first."""
    if not rests:
        return tree_map_with_path(
            func,
            tree,
            is_leaf=is_leaf,
            none_is_leaf=none_is_leaf,
            namespace=namespace,
        )
    trees, common = _broadcast_common((tree, *rests), is_leaf, none_is_leaf, namespace)
    return _map_matched(func, common, tuple(trees), _WITH_PATH, True)


def tree_broadcast_map_with_accessor(
    func: Callable[..., U],
    tree: PyTree[T],
    /,
    *rests: PyTree[T],
    is_leaf: Callable[[T], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> PyTree[U]:
    """Like :func:`tree_broadcast_map`, passing each leaf's accessor first."""
    if not rests:
        return tree_map_with_accessor(
            func,
            tree,
            is_leaf=is_leaf,
            none_is_leaf=none_is_leaf,
            namespace=namespace,
        )
    trees, common = _broadcast_common((tree, *rests), is_leaf, none_is_leaf, namespace)
    return _map_matched(func, common, tuple(trees), _WITH_ACCESSOR, True)


# --- reductions --------------------------------------------------------------------------------


class _Missing:
    __slots__: ClassVar[tuple[()]] = ()

    def __repr__(self) -> str:
        return '<MISSING>'


__MISSING: Any = _Missing()
del _Missing


@overload
def tree_reduce(
    func: Callable[[T, T], T],
    tree: PyTree[T],
    /,
    *,
    is_leaf: Callable[[T], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> T: ...


@overload
def tree_reduce(
    func: Callable[[T, S], T],
    tree: PyTree[S],
    /,
    initial: T = __MISSING,
    *,
    is_leaf: Callable[[S], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> T: ...


def tree_reduce(
    func: Callable[[T, S], T],
    tree: PyTree[S],
    /,
    initial: T = __MISSING,
    *,
    is_leaf: Callable[[S], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> T:
    """Fold the leaves of ``tree`` with ``func`` (like :func:`functools.reduce`)."""
    leaves = _leaves(tree, is_leaf, none_is_leaf, namespace)
    if initial is __MISSING:
        return functools.reduce(func, leaves)  # type: ignore[arg-type,return-value]
    return functools.reduce(func, leaves, initial)


def tree_sum(
    tree: PyTree[T],
    /,
    start: T = 0,  # type: ignore[assignment]
    *,
    is_leaf: Callable[[T], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> T:
    """Sum the leaves of ``tree`` starting from ``start`` (strings and bytes are joined)."""
    leaves: list[Any] = _leaves(tree, is_leaf, none_is_leaf, namespace)
    if isinstance(start, str):
        return ''.join([start, *leaves])  # type: ignore[return-value]
    if isinstance(start, bytes):
        return b''.join([start, *leaves])  # type: ignore[return-value]
    if isinstance(start, bytearray):
        return bytearray().join([start, *leaves])  # type: ignore[return-value]
    return sum(leaves, start)  # type: ignore[call-overload,no-any-return]


@overload
def tree_max(
    tree: PyTree[T],
    /,
    *,
    is_leaf: Callable[[T], bool] | None = None,
    key: Callable[[T], Any] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> T: ...


@overload
def tree_max(
    tree: PyTree[T],
    /,
    *,
    default: T = __MISSING,
    key: Callable[[T], Any] | None = None,
    is_leaf: Callable[[T], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> T: ...


def tree_max(
    tree: PyTree[T],
    /,
    *,
    default: T = __MISSING,
    key: Callable[[T], Any] | None = None,
    is_leaf: Callable[[T], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> T:
    """Return the largest leaf of ``tree`` (``default`` if there are none)."""
    leaves: list[Any] = _leaves(tree, is_leaf, none_is_leaf, namespace)
    if default is __MISSING:
        return max(leaves, key=key)  # type: ignore[no-any-return]
    return max(leaves, default=default, key=key)  # type: ignore[no-any-return]


@overload
def tree_min(
    tree: PyTree[T],
    /,
    *,
    key: Callable[[T], Any] | None = None,
    is_leaf: Callable[[T], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> T: ...


@overload
def tree_min(
    tree: PyTree[T],
    /,
    *,
    default: T = __MISSING,
    key: Callable[[T], Any] | None = None,
    is_leaf: Callable[[T], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> T: ...


def tree_min(
    tree: PyTree[T],
    /,
    *,
    default: T = __MISSING,
    key: Callable[[T], Any] | None = None,
    is_leaf: Callable[[T], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> T:
    """Return the smallest leaf of ``tree`` (``default`` if there are none)."""
    leaves: list[Any] = _leaves(tree, is_leaf, none_is_leaf, namespace)
    if default is __MISSING:
        return min(leaves, key=key)  # type: ignore[no-any-return]
    return min(leaves, default=default, key=key)  # type: ignore[no-any-return]


def tree_all(
    tree: PyTree[T],
    /,
    *,
    is_leaf: Callable[[T], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> bool:
    """Return whether all leaves are truthy (stops at the first falsy leaf)."""
    return all(_PyTreeIter(tree, is_leaf, none_is_leaf, namespace))  # type: ignore[arg-type]


def tree_any(
    tree: PyTree[T],
    /,
    *,
    is_leaf: Callable[[T], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> bool:
    """Return whether any leaf is truthy (stops at the first truthy leaf)."""
    return any(_PyTreeIter(tree, is_leaf, none_is_leaf, namespace))  # type: ignore[arg-type]


# --- one level ---------------------------------------------------------------------------------


class FlattenOneLevelOutput(NamedTuple, Generic[T]):  # type: ignore[misc]
    """Result of :func:`tree_flatten_one_level`."""

    children: list[PyTree[T]]
    """The direct children of the node."""
    metadata: MetaData
    """The metadata of the node."""
    entries: tuple[Any, ...]
    """The path entries of the children."""
    unflatten_func: UnflattenFunc[PyTree[T]]
    """Function rebuilding the node: ``unflatten_func(metadata, children)``."""


class FlattenOneLevelOutputEx(FlattenOneLevelOutput[T]):
    """:class:`FlattenOneLevelOutput` with the node's ``type``, ``path_entry_type`` and ``kind``."""

    type: builtins.type[Collection[T]]
    path_entry_type: builtins.type[PyTreeEntry]
    kind: PyTreeKind


def tree_flatten_one_level(
    tree: PyTree[T],
    /,
    is_leaf: Callable[[T], bool] | None = None,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> FlattenOneLevelOutputEx[T]:
    """Flatten only the root node of ``tree`` into its direct children.

    Raises :exc:`ValueError` if ``tree`` is a leaf.
    """
    node_type = type(tree)
    if (tree is None and none_is_leaf) or (is_leaf is not None and is_leaf(tree)):  # type: ignore[arg-type]
        raise ValueError(f'Cannot flatten leaf-type: {node_type} (node: {tree!r}).')
    handler = register_pytree_node.get(node_type, namespace=namespace)  # type: ignore[attr-defined]
    if handler is None:
        raise ValueError(f'Cannot flatten leaf-type: {node_type} (node: {tree!r}).')

    returned = tuple(handler.flatten_func(tree))
    if len(returned) == 2:
        raw_children, metadata = returned
        raw_entries = None
    elif len(returned) == 3:
        raw_children, metadata, raw_entries = returned
    else:
        raise RuntimeError(
            f'PyTree custom flatten function for type {node_type} should return a 2- or 3-tuple, '
            f'got {len(returned)}.',
        )
    children = list(raw_children)
    entries = tuple(range(len(children)) if raw_entries is None else raw_entries)
    if len(children) != len(entries):
        raise RuntimeError(
            f'PyTree custom flatten function for type {node_type} returned inconsistent '
            f'number of children ({len(children)}) and number of entries ({len(entries)}).',
        )

    output: FlattenOneLevelOutputEx[T] = FlattenOneLevelOutputEx(
        children=children,
        metadata=metadata,
        entries=entries,
        unflatten_func=handler.unflatten_func,
    )
    output.type = node_type  # type: ignore[assignment]
    output.path_entry_type = handler.path_entry_type
    output.kind = handler.kind
    return output


# --- treespec queries ----------------------------------------------------------------------------


def treespec_paths(treespec: PyTreeSpec, /) -> list[tuple[Any, ...]]:
    """Return the paths of the leaves of ``treespec``."""
    return treespec.paths()


def treespec_accessors(treespec: PyTreeSpec, /) -> list[PyTreeAccessor]:
    """Return the accessors of the leaves of ``treespec``."""
    return treespec.accessors()


def treespec_entries(treespec: PyTreeSpec, /) -> list[Any]:
    """Return the entries of the children of the root of ``treespec``."""
    return treespec.entries()


def treespec_entry(treespec: PyTreeSpec, index: SupportsInt | SupportsIndex, /) -> Any:
    """Return the entry of the ``index``-th child of the root of ``treespec``."""
    return treespec.entry(index)


def treespec_children(treespec: PyTreeSpec, /) -> list[PyTreeSpec]:
    """Return the treespecs of the children of the root of ``treespec``."""
    return treespec.children()


def treespec_child(treespec: PyTreeSpec, index: SupportsInt | SupportsIndex, /) -> PyTreeSpec:
    """Return the treespec of the ``index``-th child of the root of ``treespec``."""
    return treespec.child(index)


def treespec_one_level(treespec: PyTreeSpec, /) -> PyTreeSpec | None:
    """Return the root node of ``treespec`` with leaves as children (None for a leaf)."""
    return treespec.one_level()


def treespec_transform(
    treespec: PyTreeSpec,
    /,
    f_node: Callable[[PyTreeSpec], PyTreeSpec] | None = None,
    f_leaf: Callable[[PyTreeSpec], PyTreeSpec] | None = None,
) -> PyTreeSpec:
    """Rebuild ``treespec`` bottom-up through ``f_node`` (one-level nodes) and ``f_leaf``."""
    return treespec.transform(f_node, f_leaf)


def treespec_is_leaf(treespec: PyTreeSpec, /, *, strict: bool = True) -> bool:
    """Return whether ``treespec`` is a leaf (with ``strict=False``, also an empty node)."""
    if strict:
        return treespec.num_nodes == 1 and treespec.num_leaves == 1
    return treespec.num_nodes == 1


def treespec_is_strict_leaf(treespec: PyTreeSpec, /) -> bool:
    """Return whether ``treespec`` is exactly one leaf."""
    return treespec.num_nodes == 1 and treespec.num_leaves == 1


def treespec_is_one_level(treespec: PyTreeSpec, /) -> bool:
    """Return whether ``treespec`` is one node whose children are all leaves."""
    num_children = treespec.num_children
    return treespec.num_nodes == num_children + 1 and treespec.num_leaves == num_children


def treespec_is_prefix(
    treespec: PyTreeSpec,
    other_treespec: PyTreeSpec,
    /,
    *,
    strict: bool = False,
) -> bool:
    """Return whether ``treespec`` is a (strict) prefix of ``other_treespec``."""
    return treespec.is_prefix(other_treespec, strict=strict)


def treespec_is_suffix(
    treespec: PyTreeSpec,
    other_treespec: PyTreeSpec,
    /,
    *,
    strict: bool = False,
) -> bool:
    """Return whether ``treespec`` is a (strict) suffix of ``other_treespec``."""
    return treespec.is_suffix(other_treespec, strict=strict)


# --- treespec constructors -----------------------------------------------------------------------


def treespec_leaf(
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> PyTreeSpec:
    """Return the treespec of a single leaf."""
    return _C.make_leaf(none_is_leaf, namespace)


def treespec_none(
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> PyTreeSpec:
    """Return the treespec of :data:`None` (a leaf if ``none_is_leaf``)."""
    return _C.make_none(none_is_leaf, namespace)


def treespec_tuple(
    iterable: Iterable[PyTreeSpec] = (),
    /,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> PyTreeSpec:
    """Return the treespec of a tuple with children ``iterable``."""
    return _make_from_collection(tuple(iterable), none_is_leaf, namespace)


def treespec_list(
    iterable: Iterable[PyTreeSpec] = (),
    /,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> PyTreeSpec:
    """Return the treespec of a list with children ``iterable``."""
    return _make_from_collection(list(iterable), none_is_leaf, namespace)


def treespec_dict(
    mapping: Mapping[Any, PyTreeSpec] | Iterable[tuple[Any, PyTreeSpec]] = (),
    /,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
    **kwargs: PyTreeSpec,
) -> PyTreeSpec:
    """Return the treespec of a dict with the given children."""
    return _make_from_collection(dict(mapping, **kwargs), none_is_leaf, namespace)


def treespec_namedtuple(
    namedtuple: NamedTuple[PyTreeSpec],  # type: ignore[type-arg]
    /,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> PyTreeSpec:
    """Return the treespec of a namedtuple whose fields are treespecs."""
    if not is_namedtuple_instance(namedtuple):
        raise ValueError(f'Expected a namedtuple of PyTreeSpec(s), got {namedtuple!r}.')
    return _make_from_collection(namedtuple, none_is_leaf, namespace)


def treespec_ordereddict(
    mapping: Mapping[Any, PyTreeSpec] | Iterable[tuple[Any, PyTreeSpec]] = (),
    /,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
    **kwargs: PyTreeSpec,
) -> PyTreeSpec:
    """Return the treespec of an OrderedDict with the given children."""
    return _make_from_collection(OrderedDict(mapping, **kwargs), none_is_leaf, namespace)


def treespec_defaultdict(
    default_factory: Callable[[], Any] | None = None,
    mapping: Mapping[Any, PyTreeSpec] | Iterable[tuple[Any, PyTreeSpec]] = (),
    /,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
    **kwargs: PyTreeSpec,
) -> PyTreeSpec:
    """Return the treespec of a defaultdict with the given factory and children."""
    return _make_from_collection(
        defaultdict(default_factory, mapping, **kwargs),
        none_is_leaf,
        namespace,
    )


def treespec_deque(
    iterable: Iterable[PyTreeSpec] = (),
    /,
    maxlen: int | None = None,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> PyTreeSpec:
    """Return the treespec of a deque with children ``iterable``."""
    return _make_from_collection(deque(iterable, maxlen=maxlen), none_is_leaf, namespace)


def treespec_structseq(
    structseq: StructSequence[PyTreeSpec],
    /,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> PyTreeSpec:
    """Return the treespec of a PyStructSequence whose fields are treespecs."""
    if not is_structseq_instance(structseq):
        raise ValueError(f'Expected a PyStructSequence of PyTreeSpec(s), got {structseq!r}.')
    return _make_from_collection(structseq, none_is_leaf, namespace)


def treespec_frozendict(
    mapping: Mapping[Any, PyTreeSpec] | Iterable[tuple[Any, PyTreeSpec]] = (),
    /,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
    **kwargs: PyTreeSpec,
) -> PyTreeSpec:
    """Return the treespec of a frozendict (Python 3.15+ only)."""
    if _HAS_FROZENDICT:  # pragma: no cover
        frozendict = getattr(builtins, 'frozendict')  # noqa: B009
        return _make_from_collection(frozendict(mapping, **kwargs), none_is_leaf, namespace)
    raise RuntimeError(
        '`optree.treespec_frozendict` requires Python 3.15+ with `frozendict` support.',
    )


def treespec_from_collection(
    collection: Collection[PyTreeSpec],
    /,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> PyTreeSpec:
    """Return the treespec of a one-level container whose children are treespecs."""
    return _make_from_collection(collection, none_is_leaf, namespace)


# --- prefix errors -------------------------------------------------------------------------------

STANDARD_DICT_TYPES: frozenset[type] = frozenset({dict, OrderedDict, defaultdict})
if _HAS_FROZENDICT:  # pragma: no cover
    STANDARD_DICT_TYPES |= frozenset({getattr(builtins, 'frozendict')})  # noqa: B009


def _dict_keys(metadata: Any, node_type: type, /) -> list[Any]:
    return metadata[1] if node_type is defaultdict else metadata  # type: ignore[no-any-return]


def _where(accessor: PyTreeAccessor, name: str, /) -> str:
    return accessor.codify(name) if accessor else name + ' tree root'


def prefix_errors(
    prefix_tree: PyTree[T],
    full_tree: PyTree[S],
    /,
    is_leaf: Callable[[T], bool] | None = None,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> list[Callable[[str], ValueError]]:
    """Explain why ``prefix_tree`` is not a prefix of ``full_tree``.

    Returns a list of factories; each takes the name of the prefix tree and builds a
    :exc:`ValueError` that describes one disagreement. The list is empty if it is a prefix.
    """

    def _one_level(node: Any) -> FlattenOneLevelOutputEx[Any]:
        return tree_flatten_one_level(node, none_is_leaf=none_is_leaf, namespace=namespace)

    def visit(
        accessor: PyTreeAccessor,
        prefix: Any,
        full: Any,
    ) -> Iterator[Callable[[str], ValueError]]:
        if _is_leaf(prefix, is_leaf, none_is_leaf, namespace):
            return  # a leaf is a prefix of anything

        prefix_type = type(prefix)
        full_type = type(full)
        both_dicts = prefix_type in STANDARD_DICT_TYPES and full_type in STANDARD_DICT_TYPES
        if prefix_type is not full_type and not both_dicts:
            yield lambda name: ValueError(
                f'pytree structure error: different types at key path\n'
                f'    {_where(accessor, name)}\n'
                f'At that key path, the prefix pytree {name} has a subtree of type\n'
                f'    {prefix_type}\n'
                f'but at the same key path the full pytree has a subtree of different type\n'
                f'    {full_type}.',
            )
            return

        prefix_level = _one_level(prefix)
        full_level = _one_level(full)
        prefix_children = prefix_level.children
        prefix_metadata = prefix_level.metadata
        full_children = full_level.children
        full_metadata = full_level.metadata

        if both_dicts:
            prefix_keys = _dict_keys(prefix_metadata, prefix_type)
            full_keys = _dict_keys(full_metadata, full_type)
            prefix_set = set(prefix_keys)
            full_set = set(full_keys)
            if prefix_set != full_set:
                missing = prefix_set - full_set
                extra = full_set - prefix_set
                difference = ''
                if missing:
                    difference += f'\nmissing key(s):\n    {total_order_sorted(missing)}'
                if extra:
                    difference += f'\nextra key(s):\n    {total_order_sorted(extra)}'
                yield lambda name: ValueError(
                    f'pytree structure error: different pytree keys at key path\n'
                    f'    {_where(accessor, name)}\n'
                    f'At that key path, the prefix pytree {name} has a subtree of type\n'
                    f'    {prefix_type}\n'
                    f'with {len(prefix_keys)} key(s)\n'
                    f'    {prefix_keys}\n'
                    f'but at the same key path the full pytree has a subtree of type\n'
                    f'    {full_type}\n'
                    f'but with {len(full_keys)} key(s)\n'
                    f'    {full_keys}{difference}',
                )
                return
            # Same keys: line the full tree's children up with the prefix's key order.
            full_children = [full[key] for key in prefix_keys]

        if len(prefix_children) != len(full_children):
            yield lambda name: ValueError(
                f'pytree structure error: different numbers of pytree children at key path\n'
                f'    {_where(accessor, name)}\n'
                f'At that key path, the prefix pytree {name} has a subtree of type\n'
                f'    {prefix_type}\n'
                f'with {len(prefix_children)} children, '
                f'but at the same key path the full pytree has a subtree of the same '
                f'type but with {len(full_children)} children.',
            )
            return

        # deque maxlen and dict key order are not structural differences here.
        ignore_metadata = both_dicts or (prefix_type is deque and full_type is deque)
        if not ignore_metadata and prefix_metadata != full_metadata:
            prefix_repr = repr(prefix_metadata)
            full_repr = repr(full_metadata)
            diff = textwrap.indent(
                '\n'.join(difflib.ndiff(prefix_repr.splitlines(), full_repr.splitlines())),
                prefix='    ',
            )
            yield lambda name: ValueError(
                f'pytree structure error: different pytree metadata at key path\n'
                f'    {_where(accessor, name)}\n'
                f'At that key path, the prefix pytree {name} has a subtree of type\n'
                f'    {prefix_type}\n'
                f'with metadata\n'
                f'    {prefix_repr}\n'
                f'but at the same key path the full pytree has a subtree of the same '
                f'type but with metadata\n'
                f'    {full_repr}\n'
                f'so the diff in the metadata at these pytree nodes is\n'
                f'{diff}',
            )
            return

        entry_type = prefix_level.path_entry_type
        kind = prefix_level.kind
        for entry, prefix_child, full_child in zip(
            prefix_level.entries,
            prefix_children,
            full_children,
            strict=False,
        ):
            child_accessor = accessor + entry_type(entry, prefix_type, kind)
            yield from visit(child_accessor, prefix_child, full_child)

    return list(visit(PyTreeAccessor(), prefix_tree, full_tree))
