"""PyTorch integration: :func:`tree_ravel` flattens a pytree of tensors into one 1-D tensor."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import torch

from optree.integrations import _ravel

# Names optree 0.20.0 also lets one import from this module.
from optree.ops import tree_flatten, tree_unflatten  # noqa: F401
from optree.typing import PyTreeSpec, PyTreeTypeVar  # noqa: F401
from optree.utils import safe_zip  # noqa: F401

__all__ = ['TensorTree', 'tree_ravel']

TensorTree: TypeAlias = PyTreeTypeVar('TensorTree', torch.Tensor)  # type: ignore[valid-type]


class _TorchBackend(_ravel.RavelBackend[torch.Tensor]):
    noun = 'tensor'

    def empty(self) -> torch.Tensor:
        return torch.zeros(0)

    def check_flat(self, flat: Any, /) -> None:
        if not torch.is_tensor(flat):
            raise ValueError(f'Expected a tensor to unravel, got {type(flat)!r}.')

    def check_leaves(self, leaves: list[Any], /) -> None:
        if not all(torch.is_tensor(leaf) for leaf in leaves):
            raise ValueError('All leaves must be tensors.')

    def dtype(self, value: torch.Tensor, /) -> torch.dtype:
        return value.dtype

    def promote(self, dtypes: Sequence[torch.dtype], /) -> torch.dtype:
        common = dtypes[0]
        for dtype in dtypes[1:]:
            common = torch.promote_types(common, dtype)
        return common

    def size(self, value: torch.Tensor, /) -> int:
        return value.numel()

    def shape(self, value: torch.Tensor, /) -> torch.Size:
        return value.shape

    def ravel(self, leaf: torch.Tensor, dtype: torch.dtype | None, /) -> torch.Tensor:
        flat = torch.ravel(leaf)
        return flat if dtype is None else flat.to(dtype)

    def concatenate(self, arrays: list[torch.Tensor], /) -> torch.Tensor:
        return torch.cat(arrays)

    def split(
        self, flat: torch.Tensor, sizes: tuple[int, ...], offsets: tuple[int, ...], /
    ) -> list[torch.Tensor]:
        return list(torch.split(flat, list(sizes)))

    def restore(
        self, chunk: torch.Tensor, shape: torch.Size, dtype: torch.dtype | None, /
    ) -> torch.Tensor:
        chunk = chunk.reshape(shape)
        return chunk if dtype is None else chunk.to(dtype)


_BACKEND = _TorchBackend()


def tree_ravel(
    tree: TensorTree,
    /,
    is_leaf: Callable[[Any], bool] | None = None,
    *,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> tuple[torch.Tensor, Callable[[torch.Tensor], TensorTree]]:
    """Ravel a pytree of tensors into one 1-D tensor.

    Returns ``(flat, unravel)``: ``flat`` holds every leaf's values in leaf order, in the dtype
    the leaves' dtypes promote to; ``unravel`` takes a 1-D tensor of the same length back to a
    tree of the input's structure, shapes and dtypes. Every leaf must be a tensor. A tree without
    leaves ravels to an empty tensor of the default dtype. When every leaf already has the
    promoted dtype, ``unravel`` accepts a flat tensor of any dtype; otherwise it insists on the
    promoted one.

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
