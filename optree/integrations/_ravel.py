"""The one home of ``tree_ravel``: flatten a pytree of arrays into one 1-D array and back.

The array library is abstracted by a :class:`RavelBackend` (NumPy, JAX and PyTorch each provide
one in their integration module); the pytree handling, the dtype promotion rule and the checks
of the unravel function live here once.
"""

from __future__ import annotations

import functools
import itertools
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from optree.ops import tree_flatten, tree_unflatten
from optree.typing import PyTreeSpec

ArrayT = TypeVar('ArrayT')


class RavelBackend(Generic[ArrayT]):
    """What ``tree_ravel`` needs from an array library. Subclasses fill in every method."""

    #: how messages name one value of the library ("array" or "tensor")
    noun: str = 'array'

    def empty(self) -> ArrayT:
        """The flat result for a tree without leaves: a 1-D empty array of the default dtype."""
        raise NotImplementedError

    def check_flat(self, flat: Any, /) -> None:
        """Reject a value the unravel function cannot take at all (before its shape is read)."""

    def check_leaves(self, leaves: list[Any], /) -> None:
        """Reject leaves the library cannot ravel (before anything is read from them)."""

    def dtype(self, value: Any, /) -> Any:
        raise NotImplementedError

    def promote(self, dtypes: Sequence[Any], /) -> Any:
        raise NotImplementedError

    def size(self, value: Any, /) -> int:
        raise NotImplementedError

    def shape(self, value: Any, /) -> Any:
        raise NotImplementedError

    def ravel(self, leaf: Any, dtype: Any | None, /) -> ArrayT:
        """``leaf`` as a 1-D array, converted to ``dtype`` unless it is None."""
        raise NotImplementedError

    def concatenate(self, arrays: list[ArrayT], /) -> ArrayT:
        raise NotImplementedError

    def split(self, flat: Any, sizes: tuple[int, ...], offsets: tuple[int, ...], /) -> list[Any]:
        """Cut ``flat`` into consecutive chunks of ``sizes`` (``offsets`` are the running ends)."""
        raise NotImplementedError

    def restore(self, chunk: Any, shape: Any, dtype: Any | None, /) -> Any:
        """Reshape a chunk to ``shape``, converted back to ``dtype`` unless it is None."""
        raise NotImplementedError

    def partial(self, func: Callable[..., Any], /, *args: Any) -> Callable[..., Any]:
        """Bind the leading arguments of an unravel function."""
        return functools.partial(func, *args)


# (sizes, running offsets, shapes, common dtype, leaf dtypes): a plain tuple, so that the unravel
# function stays hashable (JAX wants that); the dtypes are None when nothing was converted.
_Layout = tuple[tuple[int, ...], tuple[int, ...], tuple[Any, ...], Any, 'tuple[Any, ...] | None']


def tree_ravel(
    backend: RavelBackend[ArrayT],
    tree: Any,
    /,
    is_leaf: Callable[[Any], bool] | None = None,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> tuple[ArrayT, Callable[[ArrayT], Any]]:
    """Ravel the leaves of ``tree`` into one 1-D array; also return the inverse function."""
    leaves, treespec = tree_flatten(
        tree,
        is_leaf=is_leaf,
        none_is_leaf=none_is_leaf,
        namespace=namespace,
    )
    if not leaves:
        return backend.empty(), backend.partial(_unravel_tree, backend, treespec, None)
    backend.check_leaves(leaves)

    leaf_dtypes = tuple(backend.dtype(leaf) for leaf in leaves)
    common_dtype = backend.promote(leaf_dtypes)
    sizes = tuple(backend.size(leaf) for leaf in leaves)
    offsets = tuple(itertools.accumulate(sizes))
    shapes = tuple(backend.shape(leaf) for leaf in leaves)
    layout: _Layout
    if all(dtype == common_dtype for dtype in leaf_dtypes):
        # No conversion: the unravel function then takes a flat array of any dtype.
        flat = backend.concatenate([backend.ravel(leaf, None) for leaf in leaves])
        layout = (sizes, offsets, shapes, None, None)
    else:
        flat = backend.concatenate([backend.ravel(leaf, common_dtype) for leaf in leaves])
        layout = (sizes, offsets, shapes, common_dtype, leaf_dtypes)
    return flat, backend.partial(_unravel_tree, backend, treespec, layout)


def _unravel_tree(
    backend: RavelBackend[Any],
    treespec: PyTreeSpec,
    layout: _Layout | None,
    flat: Any,
    /,
) -> Any:
    backend.check_flat(flat)
    expected = (0,) if layout is None else (layout[1][-1],)
    shape = backend.shape(flat)
    if shape != expected:
        raise ValueError(
            f'The unravel function expected {_article(backend.noun)} of shape {expected}, '
            f'got shape {shape}.',
        )
    if layout is None:
        return tree_unflatten(treespec, [])
    sizes, offsets, shapes, common_dtype, leaf_dtypes = layout
    if leaf_dtypes is None:
        chunks = backend.split(flat, sizes, offsets)
        leaves = [
            backend.restore(chunk, shape, None) for chunk, shape in zip(chunks, shapes, strict=True)
        ]
        return tree_unflatten(treespec, leaves)
    flat_dtype = backend.dtype(flat)
    if flat_dtype != common_dtype:
        raise ValueError(
            f'The unravel function expected {_article(backend.noun)} of dtype {common_dtype}, '
            f'got dtype {flat_dtype}.',
        )
    chunks = backend.split(flat, sizes, offsets)
    with warnings.catch_warnings():
        # Converting back from the common dtype may drop an imaginary part: that is the point.
        warnings.simplefilter('ignore')
        leaves = [
            backend.restore(chunk, shape, dtype)
            for chunk, shape, dtype in zip(chunks, shapes, leaf_dtypes, strict=True)
        ]
    return tree_unflatten(treespec, leaves)


def _article(noun: str) -> str:
    return f'an {noun}' if noun[0] in 'aeiou' else f'a {noun}'
