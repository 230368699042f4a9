"""JAX integration: :func:`tree_ravel` flattens a pytree of arrays into one 1-D JAX array.

The unravel function it returns is hashable, so it can be a static argument of ``jax.jit``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from types import FunctionType
from typing import Any, TypeAlias

import jax.numpy as jnp
from jax import Array, lax
from jax._src import dtypes  # the dtype rules jax.flatten_util uses (weak types included)
from jax.typing import ArrayLike

from optree.integrations import _ravel

# Names optree 0.20.0 also lets one import from this module.
from optree.ops import tree_flatten, tree_unflatten  # noqa: F401
from optree.typing import PyTreeSpec, PyTreeTypeVar  # noqa: F401
from optree.utils import safe_zip, total_order_sorted  # noqa: F401

__all__ = ['ArrayLikeTree', 'ArrayTree', 'tree_ravel']

ArrayLikeTree: TypeAlias = PyTreeTypeVar('ArrayLikeTree', ArrayLike)  # type: ignore[valid-type,arg-type]
ArrayTree: TypeAlias = PyTreeTypeVar('ArrayTree', Array)  # type: ignore[valid-type]


class HashablePartial:
    """:func:`functools.partial` of a plain function that hashes and compares by value.

    Two instances are equal when they wrap the same code with equal arguments. JAX's own class
    of this name replaces this one whenever JAX provides it.
    """

    def __init__(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        if not callable(func):
            raise TypeError(f'Expected a callable, got {func!r}.')
        if isinstance(func, HashablePartial):
            self.func: Any = func.func
            self.args: tuple[Any, ...] = func.args + args
            self.kwargs: dict[str, Any] = {**func.kwargs, **kwargs}
        elif isinstance(func, FunctionType):
            self.func = func
            self.args = args
            self.kwargs = kwargs
        else:
            raise TypeError(f'Expected a function, got {func!r}.')

    def _key(self) -> tuple[Any, ...]:
        keywords = tuple(total_order_sorted(self.kwargs.items(), key=lambda item: item[0]))
        return (self.func.__code__, self.args, keywords)

    def __eq__(self, other: object, /) -> bool:
        return type(other) is HashablePartial and self._key() == other._key()

    def __hash__(self, /) -> int:
        return hash(self._key())

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        return self.func(*self.args, *args, **{**self.kwargs, **kwargs})


with contextlib.suppress(ImportError):
    # Prefer JAX's class: JAX's own caches then treat our unravel functions like its own.
    from jax._src.util import HashablePartial  # type: ignore[assignment,no-redef]


class _JaxBackend(_ravel.RavelBackend[Array]):
    def empty(self) -> Array:
        return jnp.zeros(0)

    def dtype(self, value: Any, /) -> Any:
        return dtypes.dtype(value)

    def promote(self, dtype_list: Sequence[Any], /) -> Any:
        return dtypes.result_type(*dtype_list)

    def size(self, value: Any, /) -> int:
        return int(jnp.size(value))

    def shape(self, value: Any, /) -> tuple[int, ...]:
        return jnp.shape(value)

    def ravel(self, leaf: Any, dtype: Any | None, /) -> Array:
        if dtype is not None:
            leaf = lax.convert_element_type(leaf, dtype)
        return jnp.ravel(leaf)

    def concatenate(self, arrays: list[Array], /) -> Array:
        return jnp.concatenate(arrays)

    def split(self, flat: Any, sizes: tuple[int, ...], offsets: tuple[int, ...], /) -> list[Any]:
        return jnp.split(flat, offsets[:-1])

    def restore(self, chunk: Any, shape: Any, dtype: Any | None, /) -> Any:
        chunk = chunk.reshape(shape)
        return chunk if dtype is None else lax.convert_element_type(chunk, dtype)

    def partial(self, func: Callable[..., Any], /, *args: Any) -> Callable[..., Any]:
        return HashablePartial(func, *args)


_BACKEND = _JaxBackend()


def tree_ravel(
    tree: ArrayLikeTree,
    /,
    is_leaf: Callable[[Any], bool] | None = None,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> tuple[Array, Callable[[Array], ArrayTree]]:
    """Ravel a pytree of arrays (and scalars) into one 1-D JAX array.

    Returns ``(flat, unravel)``: ``flat`` holds every leaf's values in leaf order, in the dtype
    the leaves' dtypes promote to; ``unravel`` (hashable) takes a 1-D array of the same length
    back to a tree of the input's structure, shapes and dtypes. A tree without leaves ravels to
    an empty array of the default dtype. When every leaf already has the promoted dtype,
    ``unravel`` accepts a flat array of any dtype; otherwise it insists on the promoted one.

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
