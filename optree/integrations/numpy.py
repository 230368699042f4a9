"""NumPy integration: :func:`tree_ravel` flattens a pytree of arrays into one 1-D array."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import ArrayLike

from optree.integrations import _ravel

# Names optree 0.20.0 also lets one import from this module.
from optree.ops import tree_flatten, tree_unflatten  # noqa: F401
from optree.typing import PyTreeSpec, PyTreeTypeVar  # noqa: F401
from optree.utils import safe_zip  # noqa: F401

__all__ = ['ArrayLikeTree', 'ArrayTree', 'tree_ravel']

ArrayLikeTree: TypeAlias = PyTreeTypeVar('ArrayLikeTree', ArrayLike)  # type: ignore[valid-type,arg-type]
ArrayTree: TypeAlias = PyTreeTypeVar('ArrayTree', np.ndarray)  # type: ignore[valid-type]


class _NumpyBackend(_ravel.RavelBackend[np.ndarray]):
    def empty(self) -> np.ndarray:
        return np.zeros(0)

    def dtype(self, value: Any, /) -> np.dtype:
        return np.result_type(value)

    def promote(self, dtypes: Sequence[np.dtype], /) -> np.dtype:
        return np.result_type(*dtypes)

    def size(self, value: Any, /) -> int:
        return int(np.size(value))

    def shape(self, value: Any, /) -> tuple[int, ...]:
        return np.shape(value)

    def ravel(self, leaf: Any, dtype: np.dtype | None, /) -> np.ndarray:
        flat = np.ravel(leaf)
        return flat if dtype is None else flat.astype(dtype)

    def concatenate(self, arrays: list[np.ndarray], /) -> np.ndarray:
        return np.concatenate(arrays)

    def split(self, flat: Any, sizes: tuple[int, ...], offsets: tuple[int, ...], /) -> list[Any]:
        return np.split(flat, offsets[:-1])

    def restore(self, chunk: Any, shape: Any, dtype: np.dtype | None, /) -> Any:
        chunk = chunk.reshape(shape)
        return chunk if dtype is None else chunk.astype(dtype)


_BACKEND = _NumpyBackend()


def tree_ravel(
    tree: ArrayLikeTree,
    /,
    is_leaf: Callable[[Any], bool] | None = None,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> tuple[np.ndarray, Callable[[np.ndarray], ArrayTree]]:
    """Ravel a pytree of arrays (and scalars) into one 1-D array.

    Returns ``(flat, unravel)``: ``flat`` holds every leaf's values in leaf order, in the dtype
    the leaves' dtypes promote to; ``unravel`` takes a 1-D array of the same length back to a
    tree of the input's structure, shapes and dtypes. A tree without leaves ravels to an empty
    array of the default dtype. When every leaf already has the promoted dtype, ``unravel``
    accepts a flat array of any dtype; otherwise it insists on the promoted one.

    ``is_leaf``, ``none_is_leaf`` and ``namespace`` mean what they mean for
    :func:`optree.tree_flatten`.
    """
    return _ravel.tree_ravel(
        _BACKEND,
        tree,
        is_leaf,
        none_is_leaf=none_is_leaf,
        namespace=namespace,
    )


ravel_pytree = tree_ravel
