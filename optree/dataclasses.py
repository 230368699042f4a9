"""Dataclasses that are pytree nodes.

A drop-in for :mod:`dataclasses`: :func:`field` takes a ``pytree_node`` flag, and
:func:`dataclass` / :func:`make_dataclass` register the new class in a pytree namespace. Fields
with ``pytree_node=True`` (the default) are children; the other ``__init__`` fields are metadata.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import *  # noqa: F403
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, dataclass_transform, overload

from optree.accessors import DataclassEntry
from optree.utils import _check_class, _namespace_type_error

if TYPE_CHECKING:
    from optree.accessors import PyTreeEntry

__all__ = [
    'DataclassEntry',
    'register_node',
    *dataclasses.__all__,
]

# Class attribute set on registered dataclasses: (children fields, metadata fields).
_FIELDS = '__optree_dataclass_fields__'
_PYTREE_NODE_DEFAULT: bool = True

_T = TypeVar('_T')
_TypeT = TypeVar('_TypeT', bound=type)


def _global_namespace() -> Any:
    from optree import registry

    return getattr(registry, '__GLOBAL_NAMESPACE')


def _normalize_namespace(namespace: Any, /) -> Any:
    """'' and the global sentinel both mean the global namespace."""
    global_namespace = _global_namespace()
    if namespace is not global_namespace and not isinstance(namespace, str):
        raise _namespace_type_error(namespace)
    return global_namespace if namespace == '' else namespace


def _register_node_arguments(cls: Any, namespace: Any, /) -> tuple[Any, str]:
    """Sort out ``register_node(cls, namespace=...)`` and ``register_node(namespace)``.

    Shared by the dataclass and attrs ``register_node``: returns ``(cls, namespace)``, where
    ``cls`` is None when only a namespace was given (the caller then returns a decorator).
    """
    if cls is _global_namespace() or isinstance(cls, str):
        if namespace is not None:
            raise ValueError('Cannot specify `namespace` when the first argument is a string.')
        if cls == '':
            raise ValueError('The namespace cannot be an empty string.')
        cls, namespace = None, cls
    if namespace is None:
        raise ValueError('Must specify `namespace` when the first argument is a class.')
    return cls, namespace


class _InitField(Protocol):
    """What a dataclass field and an attrs attribute have in common here."""

    name: str
    init: bool
    metadata: Any


_FieldT = TypeVar('_FieldT', bound=_InitField)


def _split_fields(
    fields: Iterable[_FieldT],
    module: str,
    /,
) -> tuple[dict[str, _FieldT], dict[str, _FieldT]]:
    """The children (``pytree_node`` true or unset) and metadata (other ``__init__`` fields).

    Shared by the dataclass and attrs ``register_node``; a child must be an ``__init__`` field.
    """
    children: dict[str, _FieldT] = {}
    metadata: dict[str, _FieldT] = {}
    for item in fields:
        if item.metadata.get('pytree_node', _PYTREE_NODE_DEFAULT):
            if not item.init:
                raise TypeError(
                    f'PyTree node field {item.name!r} must be included in `__init__()`. '
                    f'Or you can explicitly set `{module}.field(init=False, pytree_node=False)`.',
                )
            children[item.name] = item
        elif item.init:
            metadata[item.name] = item
    return children, metadata


def _check_registrable_once(cls: Any, marker: str, module: str, /) -> None:
    """``register_node`` marks a class it registered; a second call is an error."""
    if marker in cls.__dict__:
        raise TypeError(
            f'Cannot register {cls.__name__} as a pytree node more than once with '
            f'`{module}.register_node()`. '
            'Use `optree.register_pytree_node()` or `optree.register_pytree_node_class()` '
            'with explicit flatten/unflatten functions to register it in a different namespace.',
        )


@overload  # type: ignore[no-redef]
def field(
    *,
    default: _T,
    init: bool = True,
    repr: bool = True,
    hash: bool | None = None,
    compare: bool = True,
    metadata: dict[Any, Any] | None = None,
    kw_only: bool | Literal[dataclasses.MISSING] = dataclasses.MISSING,  # type: ignore[valid-type]
    doc: str | None = None,
    pytree_node: bool | None = None,
) -> _T: ...


@overload
def field(
    *,
    default_factory: Callable[[], _T],
    init: bool = True,
    repr: bool = True,
    hash: bool | None = None,
    compare: bool = True,
    metadata: dict[Any, Any] | None = None,
    kw_only: bool | Literal[dataclasses.MISSING] = dataclasses.MISSING,  # type: ignore[valid-type]
    doc: str | None = None,
    pytree_node: bool | None = None,
) -> _T: ...


@overload
def field(
    *,
    init: bool = True,
    repr: bool = True,
    hash: bool | None = None,
    compare: bool = True,
    metadata: dict[Any, Any] | None = None,
    kw_only: bool | Literal[dataclasses.MISSING] = dataclasses.MISSING,  # type: ignore[valid-type]
    doc: str | None = None,
    pytree_node: bool | None = None,
) -> Any: ...


def field(  # type: ignore[misc]
    *,
    default: Any = dataclasses.MISSING,
    default_factory: Any = dataclasses.MISSING,
    init: bool = True,
    repr: bool = True,
    hash: bool | None = None,
    compare: bool = True,
    metadata: dict[Any, Any] | None = None,
    kw_only: bool | Literal[dataclasses.MISSING] = dataclasses.MISSING,  # type: ignore[valid-type]
    doc: str | None = None,
    pytree_node: bool | None = None,
) -> Any:
    """Like :func:`dataclasses.field`, with ``pytree_node`` (is the field a pytree child?).

    ``pytree_node`` defaults to ``metadata['pytree_node']``, else to True.
    """
    metadata = dict(metadata or {})
    if pytree_node is None:
        pytree_node = metadata.get('pytree_node', _PYTREE_NODE_DEFAULT)
    metadata['pytree_node'] = pytree_node

    kwargs: dict[str, Any] = {
        'default': default,
        'default_factory': default_factory,
        'init': init,
        'repr': repr,
        'hash': hash,
        'compare': compare,
        'metadata': metadata,
        'kw_only': kw_only,
    }
    if sys.version_info >= (3, 14):
        kwargs['doc'] = doc
    elif doc is not None:
        raise TypeError("field() got an unexpected keyword argument 'doc'")

    if not init and pytree_node:
        raise TypeError(
            '`pytree_node=True` is not allowed for non-init fields. '
            f'Please explicitly set `{__name__}.field(init=False, pytree_node=False)`.',
        )
    return dataclasses.field(**kwargs)


@overload  # type: ignore[no-redef]
def dataclass(
    *,
    init: bool = True,
    repr: bool = True,
    eq: bool = True,
    order: bool = False,
    unsafe_hash: bool = False,
    frozen: bool = False,
    match_args: bool = True,
    kw_only: bool = False,
    slots: bool = False,
    weakref_slot: bool = False,
    namespace: str,
) -> Callable[[_TypeT], _TypeT]: ...


@overload
def dataclass(
    cls: _TypeT,
    /,
    *,
    init: bool = True,
    repr: bool = True,
    eq: bool = True,
    order: bool = False,
    unsafe_hash: bool = False,
    frozen: bool = False,
    match_args: bool = True,
    kw_only: bool = False,
    slots: bool = False,
    weakref_slot: bool = False,
    namespace: str,
) -> _TypeT: ...


@dataclass_transform(field_specifiers=(field,))
def dataclass(  # type: ignore[misc]
    cls: _TypeT | None = None,
    /,
    *,
    init: bool = True,
    repr: bool = True,
    eq: bool = True,
    order: bool = False,
    unsafe_hash: bool = False,
    frozen: bool = False,
    match_args: bool = True,
    kw_only: bool = False,
    slots: bool = False,
    weakref_slot: bool = False,
    namespace: str,
) -> _TypeT | Callable[[_TypeT], _TypeT]:
    """Like :func:`dataclasses.dataclass`, and register the class as a pytree node.

    Args:
        namespace: The registry namespace ('' registers it in the global namespace).
    """
    options: dict[str, Any] = {
        'init': init,
        'repr': repr,
        'eq': eq,
        'order': order,
        'unsafe_hash': unsafe_hash,
        'frozen': frozen,
        'match_args': match_args,
        'kw_only': kw_only,
        'slots': slots,
        'weakref_slot': weakref_slot,
    }

    if cls is None:

        def decorator(cls: _TypeT) -> _TypeT:
            return dataclass(cls, namespace=namespace, **options)  # type: ignore[call-overload,no-any-return]

        return decorator

    if not inspect.isclass(cls):
        raise TypeError(f'@{__name__}.dataclass() can only be used with classes, not {cls!r}.')
    if _FIELDS in cls.__dict__:
        raise TypeError(
            f'@{__name__}.dataclass() cannot be applied to {cls.__name__} more than once.',
        )
    namespace = _normalize_namespace(namespace)
    cls = dataclasses.dataclass(cls, **options)  # type: ignore[call-overload,assignment]
    return register_node(cls, namespace=namespace)


class _DataclassDecorator(Protocol[_TypeT]):
    def __call__(
        self,
        cls: _TypeT,
        /,
        *,
        init: bool = True,
        repr: bool = True,
        eq: bool = True,
        order: bool = False,
        unsafe_hash: bool = False,
        frozen: bool = False,
        match_args: bool = True,
        kw_only: bool = False,
        slots: bool = False,
        weakref_slot: bool = False,
    ) -> _TypeT:
        raise NotImplementedError


def make_dataclass(  # type: ignore[no-redef]
    cls_name: str,
    fields: Iterable[str | tuple[str, Any] | tuple[str, Any, Any]],
    *,
    bases: tuple[type, ...] = (),
    ns: dict[str, Any] | None = None,
    init: bool = True,
    repr: bool = True,
    eq: bool = True,
    order: bool = False,
    unsafe_hash: bool = False,
    frozen: bool = False,
    match_args: bool = True,
    kw_only: bool = False,
    slots: bool = False,
    weakref_slot: bool = False,
    module: str | None = None,
    decorator: _DataclassDecorator[_TypeT] = dataclasses.dataclass,  # type: ignore[assignment]
    namespace: str,
) -> _TypeT:
    """Like :func:`dataclasses.make_dataclass`, and register the class as a pytree node.

    ``ns`` is the class namespace dict (``namespace`` of :func:`dataclasses.make_dataclass`);
    ``namespace`` is the pytree registry namespace.
    """
    global_namespace = _global_namespace()
    if isinstance(namespace, dict) or namespace is None:
        # Called like `dataclasses.make_dataclass(..., namespace={...}, ns='registry ns')`.
        if ns is global_namespace or isinstance(ns, str):
            ns, namespace = namespace, ns
        elif ns is None:
            raise TypeError("make_dataclass() missing 1 required keyword-only argument: 'ns'")
    namespace = _normalize_namespace(namespace)

    options: dict[str, Any] = {
        'init': init,
        'repr': repr,
        'eq': eq,
        'order': order,
        'unsafe_hash': unsafe_hash,
        'frozen': frozen,
        'match_args': match_args,
        'kw_only': kw_only,
        'slots': slots,
        'weakref_slot': weakref_slot,
    }
    extra: dict[str, Any] = {'bases': bases, 'namespace': ns}

    if sys.version_info >= (3, 12):
        if module is None:
            try:
                module = sys._getframemodulename(1) or '__main__'  # type: ignore[attr-defined]
            except AttributeError:  # pragma: no cover
                with contextlib.suppress(AttributeError, ValueError):
                    module = sys._getframe(1).f_globals.get('__name__', '__main__')
        extra['module'] = module
    elif module is not None:
        raise TypeError("make_dataclass() got an unexpected keyword argument 'module'")

    registered = False
    if sys.version_info >= (3, 14):
        if decorator in (dataclasses.dataclass, dataclass):
            decorator = functools.partial(dataclass, namespace=namespace)  # type: ignore[assignment]
            registered = True
        extra['decorator'] = decorator
    elif decorator is not dataclasses.dataclass:
        raise TypeError("make_dataclass() got an unexpected keyword argument 'decorator'")

    cls = dataclasses.make_dataclass(cls_name, fields=fields, **options, **extra)
    if not registered:
        cls = register_node(cls, namespace=namespace)
    return cls  # type: ignore[return-value]


@overload
def register_node(
    cls: str | None = None,
    /,
    *,
    namespace: str | None = None,
) -> Callable[[_TypeT], _TypeT]: ...


@overload
def register_node(
    cls: _TypeT,
    /,
    *,
    namespace: str,
) -> _TypeT: ...


def register_node(
    cls: _TypeT | str | None = None,
    /,
    *,
    namespace: str | None = None,
) -> _TypeT | Callable[[_TypeT], _TypeT]:
    """Register an existing dataclass as a pytree node (usable as a decorator).

    Children are the fields with ``pytree_node`` true (default); other ``__init__`` fields are
    metadata. Instances are rebuilt with ``cls(**fields)``.
    """
    cls, namespace = _register_node_arguments(cls, namespace)
    if cls is None:
        chosen: str = namespace

        def decorator(cls: _TypeT, /) -> _TypeT:
            return register_node(cls, namespace=chosen)

        return decorator

    _check_class(cls)
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f'{cls!r} is not a dataclass.')
    _check_registrable_once(cls, _FIELDS, __name__)
    namespace = _normalize_namespace(namespace)
    if not cls.__dataclass_params__.init:  # type: ignore[attr-defined]
        warnings.warn(
            f'Dataclass {cls.__name__!r} was defined with `init=False`. '
            '`tree_unflatten()` may fail because '
            f'`{__name__}.register_node()` reconstructs instances with `cls(**kwargs)`.',
            UserWarning,
            stacklevel=2,
        )

    all_fields: dict[str, Any] = getattr(cls, '__dataclass_fields__', {})
    init_vars = [
        name
        for name, dc_field in all_fields.items()
        if dc_field._field_type is dataclasses._FIELD_INITVAR  # type: ignore[attr-defined]
    ]
    if init_vars:
        raise TypeError(
            f'Dataclass {cls.__name__!r} has `InitVar` field(s) {init_vars!r}, which the '
            'auto-generated flatten/unflatten functions cannot round-trip '
            f'(`{__name__}.register_node()` reconstructs instances with `cls(**kwargs)` and cannot '
            'restore `InitVar` values). Use `optree.register_pytree_node()` or '
            '`optree.register_pytree_node_class()` with explicit flatten/unflatten functions '
            'instead.',
        )

    children_fields, metadata_fields = _split_fields(dataclasses.fields(cls), __name__)

    return _register_field_node(
        cls,
        children=[(name, name) for name in children_fields],
        metadata=[(name, name) for name in metadata_fields],
        path_entry_type=DataclassEntry,
        namespace=namespace,
        marker=(_FIELDS, (MappingProxyType(children_fields), MappingProxyType(metadata_fields))),
    )


def _register_field_node(
    cls: _TypeT,
    /,
    *,
    children: list[tuple[str, str]],
    metadata: list[tuple[str, str]],
    path_entry_type: type[PyTreeEntry],
    namespace: str,
    marker: tuple[str, Any],
) -> _TypeT:
    """Register a class whose instances are rebuilt with ``cls(**fields)`` (dataclasses, attrs).

    ``children`` and ``metadata`` list ``(attribute name, __init__ keyword)`` pairs. The class is
    then marked with ``setattr(cls, *marker)``: the marker is the "already registered" guard of
    the caller's ``register_node``, so it is set only once registered, and the registration is
    undone if setting it fails (a registered but unmarked class could never register again).
    """
    child_names = tuple(name for name, _ in children)
    child_keywords = tuple(keyword for _, keyword in children)
    metadata_pairs = tuple(metadata)
    node_cls: Any = cls

    def flatten_func(
        obj: Any,
        /,
    ) -> tuple[tuple[Any, ...], tuple[tuple[str, Any], ...], tuple[str, ...]]:
        values = tuple(getattr(obj, name) for name in child_names)
        meta = tuple((keyword, getattr(obj, name)) for name, keyword in metadata_pairs)
        return values, meta, child_names

    def unflatten_func(meta: tuple[tuple[str, Any], ...], values: Iterable[Any], /) -> Any:
        kwargs = dict(zip(child_keywords, values, strict=False))
        kwargs.update(meta)
        return node_cls(**kwargs)

    # Named as optree names them (its register_node defines them): their reprs show in
    # tree_flatten_one_level's result.
    flatten_func.__qualname__ = 'register_node.<locals>.flatten_func'
    unflatten_func.__qualname__ = 'register_node.<locals>.unflatten_func'

    from optree.registry import _register_node, unregister_pytree_node

    metadata_names = tuple(name for name, _ in metadata_pairs)
    metadata_keywords = tuple(keyword for _, keyword in metadata_pairs)
    _register_node(
        node_cls,
        flatten_func,
        unflatten_func,  # type: ignore[arg-type]
        path_entry_type,
        namespace,
        # What the two functions above do, for the core to do it without calling them.
        (child_names, child_keywords, metadata_names, metadata_keywords),
    )
    try:
        setattr(node_cls, *marker)
    except BaseException:
        unregister_pytree_node(node_cls, namespace=namespace)
        raise
    return cls
