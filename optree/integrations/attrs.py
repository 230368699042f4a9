"""attrs integration: attrs classes whose fields are pytree children.

:func:`define`, :func:`frozen`, :func:`mutable` and :func:`make_class` create an attrs class and
register it as a pytree node in a namespace; :func:`register_node` registers an existing attrs
class. A field is a child unless it says ``pytree_node=False`` (through :func:`field` or
``metadata={'pytree_node': False}``), in which case an ``__init__`` field is node metadata.
Instances are rebuilt with ``cls(**fields)``. The registration is recorded on the class in the
attribute ``__optree_attrs_fields__``: ``(children, metadata)``, each a read-only mapping from
field name to :class:`attrs.Attribute`.

The commonly used names of :mod:`attrs` are re-exported, so this module can stand in for it.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from types import MappingProxyType
from typing import Any, TypeVar, cast, overload

import attrs
from attrs import (
    NOTHING,
    Attribute,
    Factory,
    asdict,
    astuple,
    cmp_using,
    converters,
    evolve,
    exceptions,
    fields,
    fields_dict,
    filters,
    has,
    resolve_types,
    setters,
    validate,
    validators,
)

from optree.accessors import GetAttrEntry
from optree.dataclasses import (
    _check_registrable_once,
    _normalize_namespace,
    _register_field_node,
    _register_node_arguments,
    _split_fields,
)
from optree.utils import _check_class

__all__ = [  # noqa: RUF022 (same order as optree)
    'AttrsEntry',
    'field',
    'define',
    'frozen',
    'mutable',
    'make_class',
    'register_node',
    'NOTHING',
    'Attribute',
    'Factory',
    'asdict',
    'astuple',
    'cmp_using',
    'converters',
    'evolve',
    'exceptions',
    'fields',
    'fields_dict',
    'filters',
    'has',
    'resolve_types',
    'setters',
    'validate',
    'validators',
]

_FIELDS = '__optree_attrs_fields__'
_PYTREE_NODE_DEFAULT: bool = True

_TypeT = TypeVar('_TypeT', bound=type)


class AttrsEntry(GetAttrEntry):
    """Path entry of a child of an attrs class: an attribute, named by its field."""

    __slots__ = ()

    entry: str | int  # type: ignore[assignment]

    @property
    def fields(self, /) -> tuple[str, ...]:
        """Names of all the class's fields, in declaration order."""
        return tuple(attribute.name for attribute in attrs.fields(self.type))

    @property
    def init_fields(self, /) -> tuple[str, ...]:
        """Names of the fields that ``__init__`` takes."""
        return tuple(attribute.name for attribute in attrs.fields(self.type) if attribute.init)

    @property
    def children_fields(self, /) -> tuple[str, ...]:
        """Names of the fields an integer entry counts through.

        For a class registered by :func:`register_node`, the child fields it recorded; for one
        registered by hand (whose flatten function may emit anything), all the fields.
        """
        # The class's own __dict__: a subclass inherits the attribute, not the registration.
        registration = self.type.__dict__.get(_FIELDS)
        if registration is None:
            return self.fields
        return tuple(registration[0])

    @property
    def field(self, /) -> str:
        """The name of the field this entry reaches."""
        if isinstance(self.entry, int):
            return self.children_fields[self.entry]
        return self.entry

    @property
    def name(self, /) -> str:
        """The attribute name (the field's name)."""
        return self.field

    def __repr__(self, /) -> str:
        """Return ``AttrsEntry(field=..., type=...)``."""
        return f'{self.__class__.__name__}(field={self.field!r}, type={self.type!r})'


def field(**kwargs: Any) -> Any:
    """:func:`attrs.field` with one more keyword: ``pytree_node`` (a child if true, the default).

    ``pytree_node`` is stored as ``metadata['pytree_node']``; when it is None (or not given) an
    existing ``metadata['pytree_node']`` decides, and the default is true. A child field must be
    an ``__init__`` field.
    """
    pytree_node = kwargs.pop('pytree_node', None)
    metadata = dict(kwargs.pop('metadata', None) or {})
    if pytree_node is None:
        pytree_node = metadata.get('pytree_node', _PYTREE_NODE_DEFAULT)
    metadata['pytree_node'] = pytree_node
    if pytree_node and not kwargs.get('init', True):
        raise TypeError(
            '`pytree_node=True` is not allowed for non-init fields. '
            f'Please explicitly set `{__name__}.field(init=False, pytree_node=False)`.',
        )
    return attrs.field(metadata=metadata, **kwargs)


@overload
def define(*, namespace: str, **kwargs: Any) -> Callable[[_TypeT], _TypeT]: ...


@overload
def define(cls: _TypeT, /, *, namespace: str, **kwargs: Any) -> _TypeT: ...


def define(
    cls: _TypeT | None = None,
    /,
    *,
    namespace: str,
    **kwargs: Any,
) -> _TypeT | Callable[[_TypeT], _TypeT]:
    """:func:`attrs.define` (with ``kwargs``), then :func:`register_node` in ``namespace``.

    Without ``cls``, return the decorator.
    """
    if cls is None:

        def decorator(cls: _TypeT) -> _TypeT:
            return define(cls, namespace=namespace, **kwargs)

        return decorator
    if not inspect.isclass(cls):
        raise TypeError(f'@{__name__}.define() can only be used with classes, not {cls!r}.')
    return register_node(attrs.define(cls, **kwargs), namespace=namespace)


@overload
def frozen(*, namespace: str, **kwargs: Any) -> Callable[[_TypeT], _TypeT]: ...


@overload
def frozen(cls: _TypeT, /, *, namespace: str, **kwargs: Any) -> _TypeT: ...


def frozen(
    cls: _TypeT | None = None,
    /,
    *,
    namespace: str,
    **kwargs: Any,
) -> _TypeT | Callable[[_TypeT], _TypeT]:
    """:func:`define` with ``frozen=True`` (and no ``on_setattr`` hooks) unless told otherwise."""
    kwargs.setdefault('frozen', True)
    kwargs.setdefault('on_setattr', None)
    return define(cls, namespace=namespace, **kwargs)  # type: ignore[type-var,return-value]


mutable = define
"""Same as :func:`define` (attrs's name for it)."""


def make_class(
    name: str,
    attrs: Any,
    /,
    *,
    namespace: str,
    **kwargs: Any,
) -> type:
    """:func:`attrs.make_class` (with ``kwargs``), then :func:`register_node` in ``namespace``."""
    return register_node(_attrs_make_class(name, attrs, **kwargs), namespace=namespace)


_attrs_make_class = attrs.make_class


@overload
def register_node(
    cls: str | None = None,
    /,
    *,
    namespace: str | None = None,
) -> Callable[[_TypeT], _TypeT]: ...


@overload
def register_node(cls: _TypeT, /, *, namespace: str) -> _TypeT: ...


def register_node(
    cls: _TypeT | str | None = None,
    /,
    *,
    namespace: str | None = None,
) -> _TypeT | Callable[[_TypeT], _TypeT]:
    """Register an existing attrs class as a pytree node in ``namespace``; return the class.

    Fields whose ``metadata['pytree_node']`` is true (or unset) are children, the other
    ``__init__`` fields metadata. Instances are rebuilt with ``cls(**fields)`` (by ``__init__``
    keyword, i.e. the fields' aliases), so converters, validators and ``__attrs_post_init__`` run
    again: the round trip is exact only if ``__init__`` keeps the values it is given. A class
    that needs anything else should use :func:`optree.register_pytree_node` instead.

    Called with only a namespace (``register_node('ns')`` or ``register_node(namespace='ns')``),
    return the decorator. A class is registered this way at most once.
    """
    cls, namespace = _register_node_arguments(cls, namespace)
    if cls is None:
        chosen: str = namespace

        def decorator(cls: _TypeT, /) -> _TypeT:
            return register_node(cls, namespace=chosen)

        return decorator

    _check_class(cls)
    cls = cast('_TypeT', cls)
    if not attrs.has(cls):
        raise TypeError(f'{cls!r} is not an attrs-decorated class.')
    _check_registrable_once(cls, _FIELDS, __name__)
    namespace = _normalize_namespace(namespace)
    if not getattr(getattr(cls, '__attrs_props__', None), 'added_init', True):
        warnings.warn(
            f'Attrs class {cls.__name__!r} does not use an attrs-generated `__init__` '
            '(for example, `init=False`). '
            '`tree_unflatten()` may fail because '
            f'`{__name__}.register_node()` reconstructs instances with `cls(**kwargs)`.',
            UserWarning,
            stacklevel=2,
        )

    children, metadata = _split_fields(attrs.fields(cls), __name__)

    # attrs sets every field's alias (its __init__ keyword) when it builds the class.
    return cast(
        '_TypeT',
        _register_field_node(
            cls,
            children=[(name, cast(str, attribute.alias)) for name, attribute in children.items()],
            metadata=[(name, cast(str, attribute.alias)) for name, attribute in metadata.items()],
            path_entry_type=AttrsEntry,
            namespace=namespace,
            marker=(_FIELDS, (MappingProxyType(children), MappingProxyType(metadata))),
        ),
    )
