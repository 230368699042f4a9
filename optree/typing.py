"""Type annotations and type predicates for pytrees."""

from __future__ import annotations

import abc
import functools
import sys
import threading
import types
from builtins import dict as Dict
from builtins import list as List
from builtins import tuple as Tuple
from collections import OrderedDict
from collections import defaultdict as DefaultDict
from collections import deque as Deque
from collections.abc import (
    Callable,
    Collection,
    Hashable,
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Sequence,
    ValuesView,
)
from typing import (
    Any,
    ClassVar,
    Final,
    ForwardRef,
    Generic,
    Never,
    Optional,
    Protocol,
    Self,
    TypeAlias,
    TypeVar,
    Union,
    final,
    get_origin,
    runtime_checkable,
)
from weakref import WeakKeyDictionary

from typing_extensions import (
    NamedTuple,
    ParamSpec,
    TypeAliasType,
)

import optree._C as _C
from optree._C import PyTreeKind, PyTreeSpec
from optree.accessors import (
    AutoEntry,
    DataclassEntry,
    FlattenedEntry,
    GetAttrEntry,
    GetItemEntry,
    MappingEntry,
    NamedTupleEntry,
    PyTreeAccessor,
    PyTreeEntry,
    SequenceEntry,
    StructSequenceEntry,
)

__all__ = [  # noqa: RUF022 (same order as optree)
    'PyTreeSpec',
    'PyTreeDef',
    'PyTreeKind',
    'PyTree',
    'PyTreeTypeVar',
    'CustomTreeNode',
    'Children',
    'MetaData',
    'FlattenFunc',
    'UnflattenFunc',
    'PyTreeEntry',
    'GetItemEntry',
    'GetAttrEntry',
    'FlattenedEntry',
    'AutoEntry',
    'SequenceEntry',
    'MappingEntry',
    'NamedTupleEntry',
    'StructSequenceEntry',
    'DataclassEntry',
    'PyTreeAccessor',
    'is_namedtuple',
    'is_namedtuple_class',
    'is_namedtuple_instance',
    'namedtuple_fields',
    'is_structseq',
    'is_structseq_class',
    'is_structseq_instance',
    'structseq_fields',
    'T',
    'S',
    'U',
    'KT',
    'VT',
    'P',
    'F',
    'Iterable',
    'Sequence',
    'Tuple',
    'List',
    'Dict',
    'NamedTuple',
    'OrderedDict',
    'DefaultDict',
    'Deque',
    'StructSequence',
]

_HAS_FROZENDICT: bool = sys.version_info >= (3, 15) and bool(_C.OPTREE_HAS_FROZENDICT)
if _HAS_FROZENDICT:  # pragma: no cover
    FrozenDict: Any = getattr(__import__('builtins'), 'frozendict')  # noqa: B009
    __all__.insert(__all__.index('Dict') + 1, 'FrozenDict')

PyTreeDef: TypeAlias = PyTreeSpec

T = TypeVar('T')
S = TypeVar('S')
U = TypeVar('U')
KT = TypeVar('KT')
VT = TypeVar('VT')
P = ParamSpec('P')
F = TypeVar('F', bound=Callable[..., Any])

Children: TypeAlias = Iterable[T]
MetaData: TypeAlias = Optional[Hashable]  # noqa: UP045


@runtime_checkable
class CustomTreeNode(Protocol[T]):
    """Protocol of a class that knows how to flatten and rebuild itself."""

    def __tree_flatten__(
        self,
        /,
    ) -> tuple[Children[T], MetaData] | tuple[Children[T], MetaData, Iterable[Any] | None]:
        """Return ``(children, metadata)`` or ``(children, metadata, entries)``."""

    @classmethod
    def __tree_unflatten__(cls, metadata: MetaData, children: Children[T], /) -> Self:
        """Rebuild an instance from ``metadata`` and ``children``."""


class FlattenFunc(Protocol[T]):
    """Protocol of a flatten function of a custom node type."""

    @abc.abstractmethod
    def __call__(
        self,
        container: Collection[T],
        /,
    ) -> tuple[Children[T], MetaData] | tuple[Children[T], MetaData, Iterable[Any] | None]:
        """Split ``container`` into children, metadata and (optionally) entries."""


class UnflattenFunc(Protocol[T]):
    """Protocol of an unflatten function of a custom node type."""

    @abc.abstractmethod
    def __call__(self, metadata: MetaData, children: Children[T], /) -> Collection[T]:
        """Rebuild a container from ``metadata`` and ``children``."""


_UNION_TYPE: type = type(Union[int, str])  # noqa: UP007


def _type_name(param: Any, /) -> str:
    if isinstance(param, TypeVar):
        return param.__name__
    if isinstance(param, type):
        module = param.__module__
        qualname = getattr(param, '__qualname__', param.__name__)
        return qualname if module == 'builtins' else f'{module}.{qualname}'
    return repr(param)


class PyTree(Generic[T]):  # pragma: no cover
    """Generic annotation of a pytree: ``PyTree[int]`` or ``PyTree[int, 'Name']``."""

    __slots__: ClassVar[tuple[()]] = ()
    __instances__: ClassVar[WeakKeyDictionary[Any, tuple[Any, str | None]]] = WeakKeyDictionary()
    __instance_cache__: ClassVar[dict[Any, Any]] = {}
    __instance_lock__: ClassVar[threading.Lock] = threading.Lock()

    def __class_getitem__(cls, item: Any) -> Any:  # type: ignore[override]
        """Build the recursive ``Union`` alias that stands for a pytree of ``item``."""
        try:
            with cls.__instance_lock__:
                cached = cls.__instance_cache__.get(item)
        except TypeError:  # unhashable parameter
            cached = None
        if cached is not None:
            return cached
        alias = cls.__make_alias(item)
        try:
            with cls.__instance_lock__:
                return cls.__instance_cache__.setdefault(item, alias)
        except TypeError:
            return alias

    @classmethod
    def __make_alias(cls, item: Any) -> Any:
        if not isinstance(item, tuple):
            item = (item, None)
        elif len(item) == 1:
            item = (item[0], None)
        if len(item) != 2 or (item[1] is not None and not isinstance(item[1], str)):
            raise TypeError(
                f'{cls.__name__}[...] only supports a tuple of 2 items, '
                f'a parameter and a string of type name, got {item!r}.',
            )
        param, name = item

        if isinstance(param, _UNION_TYPE) and get_origin(param) is Union:
            with cls.__instance_lock__:
                try:
                    if param in cls.__instances__:
                        return param  # PyTree[PyTree[T]] is PyTree[T]
                except TypeError:
                    pass

        ref = ForwardRef(name if name is not None else f'{cls.__name__}[{_type_name(param)}]')
        members: list[Any] = [param, Tuple[ref, ...], List[ref], Dict[Any, ref]]  # type: ignore[valid-type]
        if _HAS_FROZENDICT:
            members.append(FrozenDict[Any, ref])
        members += [Deque[ref], CustomTreeNode[ref]]  # type: ignore[valid-type]
        alias: Any = Union[tuple(members)]  # type: ignore[valid-type]  # noqa: UP007
        with cls.__instance_lock__:
            try:
                cls.__instances__[alias] = (param, name)
            except TypeError:
                pass
        return alias

    def __new__(cls, /) -> Never:
        """Not instantiable."""
        raise TypeError('Cannot instantiate special typing classes.')

    def __init_subclass__(cls, /, *args: Any, **kwargs: Any) -> Never:
        """Not subclassable."""
        raise TypeError('Cannot subclass special typing classes.')

    # The methods below only exist to let static checkers accept common container operations.
    def __getitem__(self, key: Any, /) -> PyTree[T] | T:
        """Container access (annotation only)."""
        raise NotImplementedError

    def __getattr__(self, name: str, /) -> PyTree[T] | T:
        """Attribute access (annotation only)."""
        raise NotImplementedError

    def __contains__(self, key: Any, /) -> bool:
        """Membership test (annotation only)."""
        raise NotImplementedError

    def __len__(self, /) -> int:
        """Length (annotation only)."""
        raise NotImplementedError

    def __iter__(self, /) -> Iterator[PyTree[T] | T | Any]:
        """Iteration (annotation only)."""
        raise NotImplementedError

    def index(self, key: Any, /) -> int:
        """Sequence index (annotation only)."""
        raise NotImplementedError

    def count(self, key: Any, /) -> int:
        """Sequence count (annotation only)."""
        raise NotImplementedError

    def get(self, key: Any, default: S | None = None, /) -> PyTree[T] | T | S | None:
        """Mapping get (annotation only)."""
        raise NotImplementedError

    def keys(self, /) -> KeysView[Any]:
        """Mapping keys (annotation only)."""
        raise NotImplementedError

    def values(self, /) -> ValuesView[PyTree[T] | T]:
        """Mapping values (annotation only)."""
        raise NotImplementedError

    def items(self, /) -> ItemsView[Any, PyTree[T] | T]:
        """Mapping items (annotation only)."""
        raise NotImplementedError


class PyTreeTypeVar:  # pragma: no cover
    """Named pytree annotation: ``PyTreeTypeVar('Tree', int)`` is ``PyTree[int, 'Tree']``."""

    def __new__(cls, /, name: str, param: type | TypeAliasType) -> TypeAliasType:  # type: ignore[misc]
        """Return ``PyTree[param, name]``."""
        if not isinstance(name, str):
            raise TypeError(f'{cls.__name__} only supports a string of type name, got {name!r}.')
        return PyTree[param, name]  # type: ignore[misc,valid-type]

    def __init_subclass__(cls, /, *args: Any, **kwargs: Any) -> Never:
        """Not subclassable."""
        raise TypeError('Cannot subclass special typing classes.')


def _backed_by(core: Callable[P, T], /) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Use the ``_C`` implementation, keep the Python one as ``__python_implementation__``."""

    def decorate(python_impl: Callable[P, T], /) -> Callable[P, T]:
        @functools.wraps(python_impl)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return core(*args, **kwargs)

        wrapper.__cxx_implementation__ = core  # type: ignore[attr-defined]
        wrapper.__python_implementation__ = python_impl  # type: ignore[attr-defined]
        return wrapper

    return decorate


@_backed_by(_C.is_namedtuple)
def is_namedtuple(obj: object | type, /) -> bool:
    """Return whether ``obj`` is a namedtuple class or an instance of one."""
    return is_namedtuple_class(obj if isinstance(obj, type) else type(obj))


@_backed_by(_C.is_namedtuple_instance)
def is_namedtuple_instance(obj: object, /) -> bool:
    """Return whether ``obj`` is an instance of a namedtuple class."""
    return is_namedtuple_class(type(obj))


@_backed_by(_C.is_namedtuple_class)
def is_namedtuple_class(cls: object, /) -> bool:
    """Return whether ``cls`` is a namedtuple class (a tuple subclass with ``_fields``)."""
    if not (isinstance(cls, type) and issubclass(cls, tuple)):
        return False
    fields = getattr(cls, '_fields', None)
    if not isinstance(fields, tuple) or any(type(f) is not str for f in fields):
        return False
    return callable(getattr(cls, '_make', None)) and callable(getattr(cls, '_asdict', None))


@_backed_by(_C.namedtuple_fields)
def namedtuple_fields(obj: tuple | type[tuple], /) -> tuple[str, ...]:
    """Return the field names of a namedtuple class or instance."""
    if isinstance(obj, type):
        if not is_namedtuple_class(obj):
            raise TypeError(f'Expected a collections.namedtuple type, got {obj!r}.')
        return obj._fields  # type: ignore[attr-defined,no-any-return]
    if not is_namedtuple_class(type(obj)):
        raise TypeError(f'Expected an instance of collections.namedtuple type, got {obj!r}.')
    return obj._fields  # type: ignore[attr-defined,no-any-return]


_T_co = TypeVar('_T_co', covariant=True)


class StructSequenceMeta(type):
    def __subclasscheck__(cls, subclass: type, /) -> bool:
        return is_structseq_class(subclass)

    def __instancecheck__(cls, instance: Any, /) -> bool:
        return is_structseq_instance(instance)


@final
class StructSequence(tuple[_T_co, ...], metaclass=StructSequenceMeta):
    """Annotation of a PyStructSequence (e.g. :data:`sys.float_info`, ``os.stat_result``)."""

    __slots__: ClassVar[tuple[()]] = ()

    n_fields: Final[ClassVar[int]]  # type: ignore[misc]
    n_sequence_fields: Final[ClassVar[int]]  # type: ignore[misc]
    n_unnamed_fields: Final[ClassVar[int]]  # type: ignore[misc]

    def __init_subclass__(cls, /) -> Never:
        """Not subclassable."""
        raise TypeError("type 'StructSequence' is not an acceptable base type")

    def __new__(cls, /, sequence: Iterable[_T_co], dict: dict[str, Any] = ...) -> Self:
        """Not instantiable."""
        raise NotImplementedError


del StructSequenceMeta  # only StructSequence's class, under the name optree gives it

structseq: TypeAlias = StructSequence

Py_TPFLAGS_BASETYPE: int = _C.Py_TPFLAGS_BASETYPE
PyStructSequence_UnnamedField: str = _C.PyStructSequence_UnnamedField
StructSequenceFieldType: type[types.MemberDescriptorType] = type(type(sys.version_info).major)  # type: ignore[assignment]


@_backed_by(_C.is_structseq)
def is_structseq(obj: object | type, /) -> bool:
    """Return whether ``obj`` is a PyStructSequence class or an instance of one."""
    return is_structseq_class(obj if isinstance(obj, type) else type(obj))


@_backed_by(_C.is_structseq_instance)
def is_structseq_instance(obj: object, /) -> bool:
    """Return whether ``obj`` is an instance of a PyStructSequence class."""
    return is_structseq_class(type(obj))


@_backed_by(_C.is_structseq_class)
def is_structseq_class(cls: object, /) -> bool:
    """Return whether ``cls`` is a PyStructSequence class."""
    if not isinstance(cls, type) or cls.__bases__ != (tuple,):
        return False
    for attr in ('n_fields', 'n_sequence_fields', 'n_unnamed_fields'):
        if not isinstance(getattr(cls, attr, None), int):
            return False
    return not cls.__flags__ & Py_TPFLAGS_BASETYPE


@_backed_by(_C.structseq_fields)
def structseq_fields(obj: tuple | type[tuple], /) -> tuple[str, ...]:
    """Return the names of the sequence fields of a PyStructSequence class or instance."""
    if isinstance(obj, type):
        cls = obj
        if not is_structseq_class(cls):
            raise TypeError(f'Expected a PyStructSequence type, got {cls!r}.')
    else:
        cls = type(obj)
        if not is_structseq_class(cls):
            raise TypeError(f'Expected an instance of PyStructSequence type, got {obj!r}.')

    size: int = cls.n_sequence_fields  # type: ignore[attr-defined]
    unnamed: int = cls.n_unnamed_fields  # type: ignore[attr-defined]
    # Member descriptors appear in slot order; only sequence slots can be unnamed.
    names = [
        name for name, member in vars(cls).items() if isinstance(member, StructSequenceFieldType)
    ][: size - unnamed]
    slots: list[int] = list(range(len(names)))
    if unnamed > 0:
        # Unnamed slots may be anywhere: find each name's slot with a probe of unique markers.
        markers = [object() for _ in range(size)]
        try:
            probe = cls(markers)
            where = {id(marker): index for index, marker in enumerate(markers)}
            slots = [where[id(getattr(probe, name))] for name in names]
        except (TypeError, ValueError, KeyError, AttributeError):  # pragma: no cover
            pass
    by_slot = dict(zip(slots, names, strict=False))
    return tuple(by_slot.get(index, PyStructSequence_UnnamedField) for index in range(size))
