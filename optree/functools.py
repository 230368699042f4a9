"""Pytree-aware versions of :mod:`functools` helpers."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Self

from optree import registry
from optree.accessors import GetAttrEntry
from optree.ops import tree_reduce as reduce
from optree.typing import CustomTreeNode, T

if TYPE_CHECKING:
    from optree.accessors import PyTreeEntry

__all__ = [
    'partial',
    'reduce',
]

with contextlib.suppress(ImportError):  # Python 3.14+
    from functools import Placeholder  # type: ignore[attr-defined]

    __all__ += ['Placeholder']


class _PartialBox:
    """Wrap a :class:`functools.partial` so that ``partial(p, ...)`` does not merge into ``p``.

    :class:`functools.partial` flattens nested partials whose ``func`` is a partial; hiding it
    behind this box keeps the arguments of the outer partial apart (they are the pytree children).
    """

    __slots__: ClassVar[tuple[str, ...]] = ('args', 'func', 'keywords', 'wrapped')

    func: Callable[..., Any]
    args: tuple[Any, ...]
    keywords: dict[str, Any]

    def __init__(self, wrapped: functools.partial, /) -> None:
        self.wrapped: functools.partial = wrapped

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        return self.wrapped(*args, **kwargs)

    def __eq__(self, other: object, /) -> bool:
        if isinstance(other, _PartialBox):
            return self.wrapped == other.wrapped
        return self.wrapped == other

    def __hash__(self, /) -> int:
        return hash(self.wrapped)

    def __repr__(self, /) -> str:
        return repr(self.wrapped)


@registry.register_pytree_node_class(namespace=registry.__GLOBAL_NAMESPACE)  # type: ignore[attr-defined]
class partial(functools.partial, CustomTreeNode[T]):
    """A :class:`functools.partial` that is a pytree: its ``args`` and ``keywords`` are children.

    The wrapped function is the metadata of the node.
    """

    __slots__: ClassVar[tuple[()]] = ()

    func: Callable[..., Any]
    args: tuple[T, ...]
    keywords: dict[str, T]

    TREE_PATH_ENTRY_TYPE: ClassVar[type[PyTreeEntry]] = GetAttrEntry

    def __new__(cls, func: Callable[..., Any], /, *args: T, **keywords: T) -> Self:
        """Bind ``args`` and ``keywords`` to ``func``."""
        if not isinstance(func, functools.partial):
            return super().__new__(cls, func, *args, **keywords)
        box = _PartialBox(func)
        result = super().__new__(cls, box, *args, **keywords)
        box.func = func.func
        box.args = func.args
        box.keywords = func.keywords
        return result

    def __repr__(self, /) -> str:
        """Return ``module.partial(func, *args, **keywords)``."""
        parts = [repr(self.func)]
        parts += [repr(arg) for arg in self.args]
        parts += [f'{key}={value!r}' for key, value in self.keywords.items()]
        cls = self.__class__
        return f'{cls.__module__}.{cls.__qualname__}({", ".join(parts)})'

    def __tree_flatten__(  # type: ignore[override]
        self,
        /,
    ) -> tuple[tuple[tuple[T, ...], dict[str, T]], Callable[..., Any], tuple[str, str]]:
        """Children are ``(args, keywords)``; the metadata is ``func``."""
        return (self.args, self.keywords), self.func, ('args', 'keywords')

    @classmethod
    def __tree_unflatten__(  # type: ignore[override]
        cls,
        metadata: Callable[..., Any],
        children: tuple[tuple[T, ...], dict[str, T]],
        /,
    ) -> Self:
        """Rebuild from ``func`` and ``(args, keywords)``."""
        args, keywords = children
        return cls(metadata, *args, **keywords)
