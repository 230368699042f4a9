"""Small helpers shared by the pure-Python modules."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, overload

if TYPE_CHECKING:
    from optree.typing import S, T, U

# No __all__, as in optree 0.20.0 (a star import takes every public name).


def _check_class(cls: Any, /) -> None:
    """Raise optree's TypeError for a registration argument that is not a class."""
    if not inspect.isclass(cls):
        raise TypeError(f'Expected a class, got {cls!r}.')


def _namespace_type_error(namespace: Any, /, *, end: str = '.') -> TypeError:
    """optree's error for a namespace that is not a string (one call site omits the period)."""
    return TypeError(f'The namespace must be a string, got {namespace!r}{end}')


def _qualified_type_key(pair: tuple[Any, Any], /) -> tuple[str, Any]:
    key = pair[0]
    cls = type(key)
    return (f'{cls.__module__}.{cls.__qualname__}', key)


def _first(pair: tuple[Any, Any], /) -> Any:
    return pair[0]


def total_order_sorted(
    iterable: Iterable[T],
    /,
    *,
    key: Callable[[T], Any] | None = None,
    reverse: bool = False,
) -> list[T]:
    """Sort ``iterable``, falling back to type-qualified keys, then to input order.

    Keys that cannot be compared directly (e.g. ``int`` mixed with ``str``) are ordered by
    their type's qualified name first. If even that fails, the input order is kept.
    """
    items = list(iterable)
    keys: list[Any] = items if key is None else [key(item) for item in items]
    pairs = list(zip(keys, items, strict=True))
    try:
        ordered = sorted(pairs, key=_first, reverse=reverse)
    except TypeError:
        try:
            ordered = sorted(pairs, key=_qualified_type_key, reverse=reverse)
        except TypeError:
            return items
    return [item for _, item in ordered]


@overload
def safe_zip(iter1: Iterable[T], /) -> zip[tuple[T]]: ...


@overload
def safe_zip(iter1: Iterable[T], iter2: Iterable[S], /) -> zip[tuple[T, S]]: ...


@overload
def safe_zip(
    iter1: Iterable[T],
    iter2: Iterable[S],
    iter3: Iterable[U],
    /,
) -> zip[tuple[T, S, U]]: ...


@overload
def safe_zip(
    iter1: Iterable[Any],
    iter2: Iterable[Any],
    iter3: Iterable[Any],
    iter4: Iterable[Any],
    /,
    *iters: Iterable[Any],
) -> zip[tuple[Any, ...]]: ...


def safe_zip(*args: Iterable[Any]) -> zip[tuple[Any, ...]]:
    """Zip sequences, raising :exc:`ValueError` if their lengths differ."""
    sequences = [arg if isinstance(arg, Sequence) else list(arg) for arg in args]
    lengths = [len(seq) for seq in sequences]
    if len(set(lengths)) > 1:
        raise ValueError(f'length mismatch: {lengths}')
    return zip(*sequences)  # noqa: B905


def unzip2(xys: Iterable[tuple[T, S]], /) -> tuple[tuple[T, ...], tuple[S, ...]]:
    """Split an iterable of pairs into a pair of tuples (always two tuples, even when empty)."""
    firsts: list[T] = []
    seconds: list[S] = []
    for first, second in xys:
        firsts.append(first)
        seconds.append(second)
    return tuple(firsts), tuple(seconds)
