"""Registration of custom pytree node types.

The authoritative registry lives in the core (``optree._C``), one per interpreter. This module
validates arguments, forwards to the core, and keeps a Python-side record of the registrations
of this interpreter so that :func:`register_pytree_node.get` can answer with the flatten and
unflatten functions of a type.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import functools
import inspect
import sys
import threading
from collections import OrderedDict, defaultdict, deque, namedtuple
from collections.abc import Callable, Collection, Generator, Iterable
from operator import methodcaller
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NamedTuple, TypeVar, overload

import optree._C as _C
from optree.accessors import (
    AutoEntry,
    MappingEntry,
    NamedTupleEntry,
    PyTreeEntry,
    SequenceEntry,
    StructSequenceEntry,
)
from optree.typing import (
    KT,
    VT,
    Children,
    MetaData,
    PyTreeKind,
    StructSequence,
    T,
    is_namedtuple_class,
    is_structseq_class,
)
from optree.utils import (
    _check_class,
    _namespace_type_error,
    safe_zip,
    total_order_sorted,
    unzip2,
)

if TYPE_CHECKING:
    from optree.typing import CustomTreeNode, FlattenFunc, UnflattenFunc

    CustomTreeNodeType = TypeVar('CustomTreeNodeType', bound=type[CustomTreeNode])

__all__ = [  # noqa: RUF022 (same order as optree)
    'register_pytree_node',
    'register_pytree_node_class',
    'unregister_pytree_node',
    'dict_insertion_ordered',
]

_HAS_FROZENDICT: bool = sys.version_info >= (3, 15) and bool(_C.OPTREE_HAS_FROZENDICT)


@dataclasses.dataclass(init=True, repr=True, eq=True, frozen=True, slots=True)
class PyTreeNodeRegistryEntry(Generic[T]):
    """A registered node type with its flatten / unflatten functions."""

    type: builtins.type[Collection[T]]
    flatten_func: FlattenFunc[T]
    unflatten_func: UnflattenFunc[T]
    _: dataclasses.KW_ONLY
    path_entry_type: builtins.type[PyTreeEntry] = AutoEntry
    kind: PyTreeKind = PyTreeKind.CUSTOM
    namespace: str = ''


class _GlobalNamespace:
    __slots__: ClassVar[tuple[()]] = ()

    def __repr__(self, /) -> str:
        return '<GLOBAL NAMESPACE>'


# Sentinel that selects the global namespace ('') in the public registration functions, which
# otherwise refuse an empty namespace. Used by optree's own modules (functools, dataclasses).
__GLOBAL_NAMESPACE: str = _GlobalNamespace()  # type: ignore[assignment]
del _GlobalNamespace

# Serializes registry updates of this interpreter (the core is safe on its own; the lock keeps
# the core and the Python-side record in step, also on free-threaded builds).
__REGISTRY_LOCK: threading.Lock = threading.Lock()

_RegistryKey = type | tuple[str, type]


def _check_namespace(namespace: Any, /) -> str:
    """Validate a registration namespace, mapping the global sentinel to ''."""
    if namespace is __GLOBAL_NAMESPACE:
        return ''
    if not isinstance(namespace, str):
        raise _namespace_type_error(namespace)
    if namespace == '':
        raise ValueError('The namespace cannot be an empty string.')
    return namespace


def _check_path_entry_type(path_entry_type: Any, /) -> None:
    if not (inspect.isclass(path_entry_type) and issubclass(path_entry_type, PyTreeEntry)):
        raise TypeError(f'Expected a subclass of PyTreeEntry, got {path_entry_type!r}.')


def _registry_key(cls: type, namespace: str, /) -> _RegistryKey:
    return (namespace, cls) if namespace else cls


@overload
def _registry_get(
    cls: type,
    /,
    *,
    namespace: str = '',
) -> PyTreeNodeRegistryEntry | None: ...


@overload
def _registry_get(
    cls: None = None,
    /,
    *,
    namespace: str = '',
) -> dict[type, PyTreeNodeRegistryEntry]: ...


def _registry_get(
    cls: type | None = None,
    /,
    *,
    namespace: str = '',
) -> dict[type, PyTreeNodeRegistryEntry] | PyTreeNodeRegistryEntry | None:
    """Look up the registration of ``cls`` in ``namespace`` (all of them if ``cls`` is None).

    Lookups in a namespace fall back to the global namespace. ``namedtuple`` and structseq
    classes resolve to the generic entries of their kinds.
    """
    if namespace is __GLOBAL_NAMESPACE:
        namespace = ''
    if cls is not None and cls is not namedtuple and not inspect.isclass(cls):
        raise TypeError(f'Expected a class or None, got {cls!r}.')
    if not isinstance(namespace, str):
        raise _namespace_type_error(namespace)

    if cls is None:
        with __REGISTRY_LOCK:
            entries = list(_NODETYPE_REGISTRY.values())
        result = {entry.type: entry for entry in entries if entry.namespace == ''}
        if namespace:
            result.update((entry.type, entry) for entry in entries if entry.namespace == namespace)
        if _C.is_dict_insertion_ordered(namespace):
            result.update(_INSERTION_ORDERED_ENTRIES)
        return result

    if namespace:
        entry = _NODETYPE_REGISTRY.get((namespace, cls))
        if entry is not None:
            return entry
    # Asked for every class, as optree does (it also rejects a namespace the core cannot take).
    if _C.is_dict_insertion_ordered(namespace) and cls in _INSERTION_ORDERED_ENTRIES:
        return _INSERTION_ORDERED_ENTRIES[cls]
    entry = _NODETYPE_REGISTRY.get(cls)
    if entry is not None:
        return entry
    if is_structseq_class(cls):
        return _NODETYPE_REGISTRY.get(StructSequence)
    if is_namedtuple_class(cls):
        return _NODETYPE_REGISTRY.get(namedtuple)  # type: ignore[call-overload]
    return None


def register_pytree_node(
    cls: type[Collection[T]],
    /,
    flatten_func: FlattenFunc[T],
    unflatten_func: UnflattenFunc[T],
    *,
    path_entry_type: type[PyTreeEntry] = AutoEntry,
    namespace: str,
) -> type[Collection[T]]:
    """Register ``cls`` as a pytree node type in ``namespace``.

    Args:
        cls: The container type to register.
        flatten_func: ``container -> (children, metadata)`` or
            ``(children, metadata, entries)``.
        unflatten_func: ``(metadata, children) -> container``.
        path_entry_type: The :class:`PyTreeEntry` subclass that builds path entries of children.
        namespace: A non-empty namespace; the registration is only visible to calls that pass
            this namespace.

    Returns:
        ``cls``, so that the function can be used as a class decorator helper.

    ``register_pytree_node.get(cls=None, /, *, namespace='')`` returns the registration record
    of a type (or a dict of all of them).
    """
    return _register_node(cls, flatten_func, unflatten_func, path_entry_type, namespace, None)


def _register_node(
    cls: type[Collection[T]],
    flatten_func: FlattenFunc[T],
    unflatten_func: UnflattenFunc[T],
    path_entry_type: type[PyTreeEntry],
    namespace: str,
    field_layout: tuple[tuple[str, ...], ...] | None,
    /,
) -> type[Collection[T]]:
    """:func:`register_pytree_node`, optionally with the field layout the two functions follow.

    ``optree.dataclasses`` and the attrs integration pass ``field_layout`` (see
    ``_C.register_node``), so that the core reads and rebuilds instances without calling them.
    """
    _check_class(cls)
    _check_path_entry_type(path_entry_type)
    namespace = _check_namespace(namespace)

    entry = PyTreeNodeRegistryEntry(
        cls,
        flatten_func,
        unflatten_func,
        path_entry_type=path_entry_type,
        namespace=namespace,
    )
    with __REGISTRY_LOCK:
        _C.register_node(
            cls,
            flatten_func,
            unflatten_func,
            path_entry_type,
            namespace,
            field_layout,
        )
        _NODETYPE_REGISTRY[_registry_key(cls, namespace)] = entry
    return cls


register_pytree_node.get = _registry_get  # type: ignore[attr-defined]


@overload
def register_pytree_node_class(
    cls: str | None = None,
    /,
    *,
    path_entry_type: type[PyTreeEntry] | None = None,
    namespace: str | None = None,
) -> Callable[[CustomTreeNodeType], CustomTreeNodeType]: ...


@overload
def register_pytree_node_class(
    cls: CustomTreeNodeType,
    /,
    *,
    path_entry_type: type[PyTreeEntry] | None,
    namespace: str,
) -> CustomTreeNodeType: ...


def register_pytree_node_class(
    cls: CustomTreeNodeType | str | None = None,
    /,
    *,
    path_entry_type: type[PyTreeEntry] | None = None,
    namespace: str | None = None,
) -> CustomTreeNodeType | Callable[[CustomTreeNodeType], CustomTreeNodeType]:
    """Register a class defining ``__tree_flatten__`` and ``__tree_unflatten__`` as a node type.

    Usable as ``@register_pytree_node_class(namespace='ns')``,
    ``@register_pytree_node_class('ns')`` or ``register_pytree_node_class(cls, namespace='ns')``.
    Classes defining ``tree_flatten`` / ``tree_unflatten`` (JAX style) are accepted too. The
    path entry type defaults to the class attribute ``TREE_PATH_ENTRY_TYPE``, else AutoEntry.
    """
    if cls is __GLOBAL_NAMESPACE or isinstance(cls, str):
        if namespace is not None:
            raise ValueError('Cannot specify `namespace` when the first argument is a string.')
        if cls == '':
            raise ValueError('The namespace cannot be an empty string.')
        cls, namespace = None, cls  # type: ignore[assignment]

    if namespace is None:
        raise ValueError('Must specify `namespace` when the first argument is a class.')
    if namespace is not __GLOBAL_NAMESPACE and not isinstance(namespace, str):
        raise _namespace_type_error(namespace, end='')
    if namespace == '':
        raise ValueError('The namespace cannot be an empty string.')

    if cls is None:
        chosen_namespace: str = namespace

        def decorator(cls: CustomTreeNodeType, /) -> CustomTreeNodeType:
            return register_pytree_node_class(
                cls,
                path_entry_type=path_entry_type,
                namespace=chosen_namespace,
            )

        return decorator

    _check_class(cls)
    if path_entry_type is None:
        path_entry_type = getattr(cls, 'TREE_PATH_ENTRY_TYPE', AutoEntry)
    _check_path_entry_type(path_entry_type)

    if not _defines(cls, '__tree_flatten__', '__tree_unflatten__'):
        if not _defines(cls, 'tree_flatten', 'tree_unflatten'):
            raise TypeError(
                f'{cls!r} must define both `__tree_flatten__` and `__tree_unflatten__` methods '
                'for registration as a pytree node.',
            )
        _adapt_jax_style_methods(cls)

    register_pytree_node(
        cls,  # type: ignore[arg-type]
        methodcaller('__tree_flatten__'),
        cls.__tree_unflatten__,  # type: ignore[arg-type]
        path_entry_type=path_entry_type,  # type: ignore[arg-type]
        namespace=namespace,
    )
    return cls


def _defines(cls: type, *methods: str) -> bool:
    return all(callable(getattr(cls, method, None)) for method in methods)


def _adapt_jax_style_methods(cls: Any, /) -> None:
    """Add ``__tree_flatten__`` / ``__tree_unflatten__`` delegating to JAX-style methods."""
    flatten = cls.tree_flatten
    unflatten = getattr(cls.tree_unflatten, '__func__', cls.tree_unflatten)

    @functools.wraps(flatten)
    def __tree_flatten__(self: Any, /) -> Any:
        return self.tree_flatten()

    @functools.wraps(unflatten)
    def __tree_unflatten__(cls: Any, metadata: MetaData, children: Children[T], /) -> Any:
        return cls.tree_unflatten(metadata, children)

    cls.__tree_flatten__ = __tree_flatten__
    cls.__tree_unflatten__ = classmethod(__tree_unflatten__)


def unregister_pytree_node(cls: type, /, *, namespace: str) -> PyTreeNodeRegistryEntry:
    """Remove the registration of ``cls`` in ``namespace`` and return its record."""
    _check_class(cls)
    namespace = _check_namespace(namespace)
    with __REGISTRY_LOCK:
        _C.unregister_node(cls, namespace)
        return _NODETYPE_REGISTRY.pop(_registry_key(cls, namespace))


@contextlib.contextmanager
def dict_insertion_ordered(mode: bool, /, *, namespace: str) -> Generator[None]:
    """Context manager: flatten dicts in insertion order (not sorted) within ``namespace``.

    The previous mode of the namespace is restored on exit.
    """
    namespace = _check_namespace(namespace)
    with __REGISTRY_LOCK:
        previous = _C.is_dict_insertion_ordered(namespace, inherit_global_namespace=False)
        _C.set_dict_insertion_ordered(bool(mode), namespace)
    try:
        yield
    finally:
        with __REGISTRY_LOCK:
            # A context entered for good (torch.utils._cxx_pytree does) is closed only when the
            # interpreter tears down, after its registry is gone: nothing is left to restore.
            if _C.get_current_interpreter_id() in _C.get_alive_interpreter_ids():
                _C.set_dict_insertion_ordered(previous, namespace)


class DictMetaData(list[KT]):
    """Sorted keys of a dict, remembering the dict's own key order in ``original_keys``."""

    __slots__: ClassVar[tuple[str, ...]] = ('original_keys',)

    original_keys: dict[KT, None]

    def __init__(
        self,
        keys: Iterable[KT] = (),
        /,
        *,
        original_keys: Iterable[KT] | None = None,
        check_keys_consistency: bool = True,
    ) -> None:
        """Create from ``keys``; ``original_keys`` defaults to the same keys."""
        super().__init__(keys)
        if original_keys is None:
            self.original_keys = dict.fromkeys(self)
            return
        self.original_keys = dict.fromkeys(original_keys)
        if len(self.original_keys) != len(self):
            raise ValueError(
                f'`original_keys` must have the same length as `keys`, '
                f'got {len(self.original_keys)} != {len(self)}.',
            )
        if check_keys_consistency and set(self.original_keys) != set(self):
            raise ValueError(
                '`original_keys` must have the same keys as `keys`, '
                f'got {set(self.original_keys)} != {set(self)}.',
            )

    def __getnewargs_ex__(self, /) -> tuple[tuple[list[KT]], dict[str, Any]]:
        """Pickle support."""
        keyword = {'original_keys': list(self.original_keys), 'check_keys_consistency': False}
        return (list(self),), keyword


# Python versions of the builtin node handlers. The core does not call them (it handles the
# builtin kinds natively); they back the records returned by `register_pytree_node.get`.


def _none_flatten(_: None, /) -> tuple[tuple[()], None]:
    return (), None


def _none_unflatten(_: None, children: Iterable[Any], /) -> None:
    for _child in children:
        raise ValueError('Expected no children.')


def _tuple_flatten(tup: tuple[T, ...], /) -> tuple[tuple[T, ...], None]:
    return tup, None


def _tuple_unflatten(_: None, children: Iterable[T], /) -> tuple[T, ...]:
    return tuple(children)


def _list_flatten(lst: list[T], /) -> tuple[list[T], None]:
    return lst, None


def _list_unflatten(_: None, children: Iterable[T], /) -> list[T]:
    return list(children)


def _dict_flatten(dct: dict[KT, VT], /) -> tuple[tuple[VT, ...], list[KT], tuple[KT, ...]]:
    keys, values = unzip2(total_order_sorted(dct.items(), key=_item_key))
    metadata = DictMetaData(keys, original_keys=dct, check_keys_consistency=False)
    return values, metadata, keys


def _dict_unflatten(metadata: list[KT], values: Iterable[VT], /) -> dict[KT, VT]:
    result: dict[KT, Any] = dict.fromkeys(getattr(metadata, 'original_keys', ()))
    result.update(safe_zip(metadata, values))
    return result


def _dict_insertion_ordered_flatten(
    dct: dict[KT, VT],
    /,
) -> tuple[tuple[VT, ...], list[KT], tuple[KT, ...]]:
    keys, values = unzip2(dct.items())
    metadata = DictMetaData(keys, original_keys=dct, check_keys_consistency=False)
    return values, metadata, keys


def _dict_insertion_ordered_unflatten(keys: list[KT], values: Iterable[VT], /) -> dict[KT, VT]:
    return dict(safe_zip(keys, values))


def _ordereddict_flatten(
    dct: OrderedDict[KT, VT],
    /,
) -> tuple[tuple[VT, ...], list[KT], tuple[KT, ...]]:
    keys, values = unzip2(dct.items())
    return values, list(keys), keys


def _ordereddict_unflatten(keys: list[KT], values: Iterable[VT], /) -> OrderedDict[KT, VT]:
    return OrderedDict(safe_zip(keys, values))


def _defaultdict_flatten(
    dct: defaultdict[KT, VT],
    /,
) -> tuple[tuple[VT, ...], tuple[Callable[[], VT] | None, list[KT]], tuple[KT, ...]]:
    values, keys, entries = _dict_flatten(dct)
    return values, (dct.default_factory, keys), entries


def _defaultdict_unflatten(
    metadata: tuple[Callable[[], VT] | None, list[KT]],
    values: Iterable[VT],
    /,
) -> defaultdict[KT, VT]:
    factory, keys = metadata
    return defaultdict(factory, _dict_unflatten(keys, values))


def _defaultdict_insertion_ordered_flatten(
    dct: defaultdict[KT, VT],
    /,
) -> tuple[tuple[VT, ...], tuple[Callable[[], VT] | None, list[KT]], tuple[KT, ...]]:
    values, keys, entries = _dict_insertion_ordered_flatten(dct)
    return values, (dct.default_factory, keys), entries


def _defaultdict_insertion_ordered_unflatten(
    metadata: tuple[Callable[[], VT] | None, list[KT]],
    values: Iterable[VT],
    /,
) -> defaultdict[KT, VT]:
    factory, keys = metadata
    return defaultdict(factory, _dict_insertion_ordered_unflatten(keys, values))


def _deque_flatten(deq: deque[T], /) -> tuple[deque[T], int | None]:
    return deq, deq.maxlen


def _deque_unflatten(maxlen: int | None, children: Iterable[T], /) -> deque[T]:
    return deque(children, maxlen=maxlen)


def _namedtuple_flatten(tup: NamedTuple, /) -> tuple[tuple[Any, ...], type[NamedTuple]]:
    return tup, type(tup)


def _namedtuple_unflatten(cls: type[NamedTuple], children: Iterable[Any], /) -> NamedTuple:
    return cls(*children)


def _structseq_flatten(seq: StructSequence[T], /) -> tuple[tuple[T, ...], type[StructSequence[T]]]:
    return seq, type(seq)


def _structseq_unflatten(
    cls: type[StructSequence[T]],
    children: Iterable[T],
    /,
) -> StructSequence[T]:
    return cls(children)


def _item_key(item: tuple[KT, VT], /) -> KT:
    return item[0]


def _builtin_entry(
    cls: Any,
    flatten_func: Any,
    unflatten_func: Any,
    path_entry_type: type[PyTreeEntry],
    kind: PyTreeKind,
) -> PyTreeNodeRegistryEntry:
    return PyTreeNodeRegistryEntry(
        cls,
        flatten_func,
        unflatten_func,
        path_entry_type=path_entry_type,
        kind=kind,
    )


# Python-side record of the registrations of this interpreter: global registrations are keyed
# by type, namespaced ones by (namespace, type). Guarded by `__REGISTRY_LOCK` for writes.
_NODETYPE_REGISTRY: dict[_RegistryKey, PyTreeNodeRegistryEntry] = {
    type(None): _builtin_entry(
        type(None), _none_flatten, _none_unflatten, PyTreeEntry, PyTreeKind.NONE
    ),
    tuple: _builtin_entry(tuple, _tuple_flatten, _tuple_unflatten, SequenceEntry, PyTreeKind.TUPLE),
    list: _builtin_entry(list, _list_flatten, _list_unflatten, SequenceEntry, PyTreeKind.LIST),
    dict: _builtin_entry(dict, _dict_flatten, _dict_unflatten, MappingEntry, PyTreeKind.DICT),
    namedtuple: _builtin_entry(  # type: ignore[dict-item]
        namedtuple,
        _namedtuple_flatten,
        _namedtuple_unflatten,
        NamedTupleEntry,
        PyTreeKind.NAMEDTUPLE,
    ),
    OrderedDict: _builtin_entry(
        OrderedDict,
        _ordereddict_flatten,
        _ordereddict_unflatten,
        MappingEntry,
        PyTreeKind.ORDEREDDICT,
    ),
    defaultdict: _builtin_entry(
        defaultdict,
        _defaultdict_flatten,
        _defaultdict_unflatten,
        MappingEntry,
        PyTreeKind.DEFAULTDICT,
    ),
    deque: _builtin_entry(deque, _deque_flatten, _deque_unflatten, SequenceEntry, PyTreeKind.DEQUE),
    StructSequence: _builtin_entry(
        StructSequence,
        _structseq_flatten,
        _structseq_unflatten,
        StructSequenceEntry,
        PyTreeKind.STRUCTSEQUENCE,
    ),
}

# Records used instead of the sorted-dict ones while dict insertion order is enabled.
_INSERTION_ORDERED_ENTRIES: dict[type, PyTreeNodeRegistryEntry] = {
    dict: _builtin_entry(
        dict,
        _dict_insertion_ordered_flatten,
        _dict_insertion_ordered_unflatten,
        MappingEntry,
        PyTreeKind.DICT,
    ),
    defaultdict: _builtin_entry(
        defaultdict,
        _defaultdict_insertion_ordered_flatten,
        _defaultdict_insertion_ordered_unflatten,
        MappingEntry,
        PyTreeKind.DEFAULTDICT,
    ),
}

if _HAS_FROZENDICT:  # pragma: no cover
    _frozendict: Any = getattr(builtins, 'frozendict')  # noqa: B009

    def _frozendict_flatten(dct: Any, /) -> tuple[tuple[Any, ...], list[Any], tuple[Any, ...]]:
        return _dict_flatten(dct)

    def _frozendict_unflatten(metadata: list[Any], values: Iterable[Any], /) -> Any:
        return _frozendict(_dict_unflatten(metadata, values))

    def _frozendict_insertion_ordered_flatten(
        dct: Any,
        /,
    ) -> tuple[tuple[Any, ...], list[Any], tuple[Any, ...]]:
        return _dict_insertion_ordered_flatten(dct)

    def _frozendict_insertion_ordered_unflatten(keys: list[Any], values: Iterable[Any], /) -> Any:
        return _frozendict(_dict_insertion_ordered_unflatten(keys, values))

    _NODETYPE_REGISTRY[_frozendict] = _builtin_entry(
        _frozendict,
        _frozendict_flatten,
        _frozendict_unflatten,
        MappingEntry,
        PyTreeKind.FROZENDICT,
    )
    _INSERTION_ORDERED_ENTRIES[_frozendict] = _builtin_entry(
        _frozendict,
        _frozendict_insertion_ordered_flatten,
        _frozendict_insertion_ordered_unflatten,
        MappingEntry,
        PyTreeKind.FROZENDICT,
    )
