"""Path entries and accessors: how to reach a child of a pytree node from the node itself."""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Literal, Self, TypeVar, overload

import optree._C as _C
from optree._C import PyTreeKind

if TYPE_CHECKING:
    from optree.typing import NamedTuple, StructSequence

__all__ = [  # noqa: RUF022 (same order as optree)
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
]

_T = TypeVar('_T')
_T_co = TypeVar('_T_co', covariant=True)
_KT_co = TypeVar('_KT_co', covariant=True)
_VT_co = TypeVar('_VT_co', covariant=True)


@dataclasses.dataclass(init=True, repr=False, eq=False, frozen=True, slots=True)
class PyTreeEntry:
    """One step of a path: the ``entry`` of a child in a node of ``type`` and ``kind``."""

    entry: Any
    type: builtins.type
    kind: PyTreeKind

    def __post_init__(self, /) -> None:
        """Reject kinds that have no children."""
        kind = self.kind
        if kind == PyTreeKind.LEAF:
            raise ValueError('Cannot create a leaf path entry.')
        if kind == PyTreeKind.NONE:
            raise ValueError('Cannot create a path entry for None.')

    def __call__(self, obj: Any, /) -> Any:
        """Return the child of ``obj`` at this entry (subscription by default)."""
        try:
            return obj[self.entry]
        except TypeError as ex:
            raise TypeError(
                f'{self.__class__!r} cannot access through {obj!r} via entry {self.entry!r}',
            ) from ex

    def __add__(self, other: object, /) -> PyTreeAccessor:
        """Chain this entry with another entry or an accessor."""
        if isinstance(other, PyTreeEntry):
            return PyTreeAccessor((self, other))
        if isinstance(other, PyTreeAccessor):
            return PyTreeAccessor((self, *other))
        return NotImplemented

    def _identity(self, /) -> tuple[Any, ...]:
        cls = self.__class__
        return (self.entry, self.type, self.kind, cls.__call__, cls.codify)

    def __eq__(self, other: object, /) -> bool:
        """Entries are equal if they access the same child in the same way."""
        if not isinstance(other, PyTreeEntry):
            return False
        return self._identity() == other._identity()

    def __hash__(self, /) -> int:
        """Hash consistent with :meth:`__eq__`."""
        return hash(self._identity())

    def __repr__(self, /) -> str:
        """Return ``ClassName(entry=..., type=...)``."""
        return f'{self.__class__.__name__}(entry={self.entry!r}, type={self.type!r})'

    def codify(self, /, node: str = '') -> str:
        """Return Python source that accesses this entry from the expression ``node``."""
        return f'{node}[<flat index {self.entry!r}>]'


class AutoEntry(PyTreeEntry):
    """Pick a concrete entry class from the node type when instantiated directly."""

    __slots__ = ()

    def __new__(  # type: ignore[misc]
        cls,
        /,
        entry: Any,
        type: builtins.type,
        kind: PyTreeKind,
    ) -> PyTreeEntry:
        """Dispatch to the entry class best suited to ``type``."""
        if cls is not AutoEntry:
            return super().__new__(cls)
        if kind != PyTreeKind.CUSTOM:
            raise ValueError(f'Cannot create an automatic path entry for PyTreeKind {kind!r}.')

        chosen: builtins.type[PyTreeEntry]
        if _C.is_structseq_class(type):
            chosen = StructSequenceEntry
        elif _C.is_namedtuple_class(type):
            chosen = NamedTupleEntry
        elif dataclasses.is_dataclass(type):
            chosen = DataclassEntry
        elif issubclass(type, Mapping):
            chosen = MappingEntry
        elif issubclass(type, Sequence):
            chosen = SequenceEntry
        else:
            chosen = FlattenedEntry
        # ``chosen`` is never an AutoEntry subclass, so ``__init__`` will not run on the result:
        # return a fully initialized instance.
        return chosen(entry, type, kind)


class GetItemEntry(PyTreeEntry):
    """An entry accessed with ``obj[entry]``."""

    __slots__ = ()

    def __call__(self, obj: Any, /) -> Any:
        """Return ``obj[entry]``."""
        return obj[self.entry]

    def codify(self, /, node: str = '') -> str:
        """Return ``node[entry]``."""
        return f'{node}[{self.entry!r}]'


class GetAttrEntry(PyTreeEntry):
    """An entry accessed with ``getattr(obj, entry)`` (dotted names are followed)."""

    __slots__ = ()

    entry: str

    @property
    def name(self, /) -> str:
        """The attribute name."""
        return self.entry

    def __call__(self, obj: Any, /) -> Any:
        """Return the (possibly dotted) attribute of ``obj``."""
        for part in self.name.split('.'):
            obj = getattr(obj, part)
        return obj

    def codify(self, /, node: str = '') -> str:
        """Return ``node.name`` (``getattr(node, 'name')`` for non-identifiers)."""
        for part in self.name.split('.'):
            node = f'{node}.{part}' if part.isidentifier() else f'getattr({node}, {part!r})'
        return node


class FlattenedEntry(PyTreeEntry):
    """An entry with no way of access other than the flat index of the child."""

    __slots__ = ()


class SequenceEntry(GetItemEntry, Generic[_T_co]):
    """An integer index into a sequence."""

    __slots__ = ()

    entry: int
    type: builtins.type[Sequence[_T_co]]

    @property
    def index(self, /) -> int:
        """The integer index."""
        return self.entry

    def __call__(self, obj: Sequence[_T_co], /) -> _T_co:
        """Return ``obj[index]``."""
        return obj[self.index]

    def __repr__(self, /) -> str:
        """Return ``ClassName(index=..., type=...)``."""
        return f'{self.__class__.__name__}(index={self.index!r}, type={self.type!r})'


class MappingEntry(GetItemEntry, Generic[_KT_co, _VT_co]):
    """A key into a mapping."""

    __slots__ = ()

    entry: _KT_co
    type: builtins.type[Mapping[_KT_co, _VT_co]]

    @property
    def key(self, /) -> _KT_co:
        """The mapping key."""
        return self.entry

    def __call__(self, obj: Mapping[_KT_co, _VT_co], /) -> _VT_co:
        """Return ``obj[key]``."""
        return obj[self.key]

    def __repr__(self, /) -> str:
        """Return ``ClassName(key=..., type=...)``."""
        return f'{self.__class__.__name__}(key={self.key!r}, type={self.type!r})'


class NamedTupleEntry(SequenceEntry[_T]):
    """A field of a :func:`collections.namedtuple` (stored as its index)."""

    __slots__ = ()

    entry: int
    type: builtins.type[NamedTuple[_T]]  # type: ignore[type-arg]
    kind: Literal[PyTreeKind.NAMEDTUPLE]

    @property
    def fields(self, /) -> tuple[str, ...]:
        """All field names of the namedtuple type."""
        return _C.namedtuple_fields(self.type)

    @property
    def field(self, /) -> str:
        """The field name of this entry."""
        return self.fields[self.entry]

    def __repr__(self, /) -> str:
        """Return ``ClassName(field=..., type=...)``."""
        return f'{self.__class__.__name__}(field={self.field!r}, type={self.type!r})'

    def codify(self, /, node: str = '') -> str:
        """Return ``node.field``."""
        return f'{node}.{self.field}'


class StructSequenceEntry(SequenceEntry[_T]):
    """A field of a PyStructSequence (stored as its index)."""

    __slots__ = ()

    entry: int
    type: builtins.type[StructSequence[_T]]
    kind: Literal[PyTreeKind.STRUCTSEQUENCE]

    @property
    def fields(self, /) -> tuple[str, ...]:
        """All visible field names of the structseq type."""
        return _C.structseq_fields(self.type)

    @property
    def field(self, /) -> str:
        """The field name of this entry (the unnamed marker for unnamed slots)."""
        return self.fields[self.entry]

    @property
    def is_unnamed(self, /) -> bool:
        """Whether this slot has no field name."""
        return self.field == _C.PyStructSequence_UnnamedField

    def __repr__(self, /) -> str:
        """Return ``ClassName(field=..., type=...)`` (``entry=`` for unnamed slots)."""
        name = self.__class__.__name__
        if self.is_unnamed:
            return f'{name}(entry={self.entry!r}, type={self.type!r})'
        return f'{name}(field={self.field!r}, type={self.type!r})'

    def codify(self, /, node: str = '') -> str:
        """Return ``node.field`` (``node[index]`` for unnamed slots)."""
        if self.is_unnamed:
            return super().codify(node)
        return f'{node}.{self.field}'


class DataclassEntry(GetAttrEntry):
    """A field of a dataclass (stored as its name or as its index among the children)."""

    __slots__ = ()

    entry: str | int  # type: ignore[assignment]

    @property
    def fields(self, /) -> tuple[str, ...]:
        """All field names of the dataclass."""
        return tuple(f.name for f in dataclasses.fields(self.type))

    @property
    def init_fields(self, /) -> tuple[str, ...]:
        """The field names that ``__init__`` accepts."""
        return tuple(f.name for f in dataclasses.fields(self.type) if f.init)

    @property
    def children_fields(self, /) -> tuple[str, ...]:
        """The field names that are pytree children."""
        from optree.dataclasses import _FIELDS

        registered = self.type.__dict__.get(_FIELDS)
        if registered is None:
            return self.fields
        return tuple(registered[0])

    @property
    def field(self, /) -> str:
        """The field name of this entry."""
        entry = self.entry
        if isinstance(entry, int):
            return self.children_fields[entry]
        return entry

    @property
    def name(self, /) -> str:
        """The attribute name (same as :attr:`field`)."""
        return self.field

    def __repr__(self, /) -> str:
        """Return ``ClassName(field=..., type=...)``."""
        return f'{self.__class__.__name__}(field={self.field!r}, type={self.type!r})'


class PyTreeAccessor(tuple[PyTreeEntry, ...]):
    """A sequence of path entries leading from the root of a pytree to one of its nodes."""

    __slots__ = ()

    def __new__(cls, /, path: Iterable[PyTreeEntry] = ()) -> Self:
        """Create an accessor from path entries."""
        if not isinstance(path, (list, tuple)):
            path = tuple(path)
        for item in path:
            if not isinstance(item, PyTreeEntry):
                raise TypeError(f'Expected a path of PyTreeEntry, got {path!r}.')
        return super().__new__(cls, path)

    @property
    def path(self, /) -> tuple[Any, ...]:
        """The raw entries of the path."""
        return tuple(item.entry for item in self)

    def __call__(self, obj: Any, /) -> Any:
        """Follow the path from ``obj`` and return the node reached."""
        for item in self:
            obj = item(obj)
        return obj

    @overload  # type: ignore[override]
    def __getitem__(self, index: int, /) -> PyTreeEntry: ...

    @overload
    def __getitem__(self, index: slice, /) -> Self: ...

    def __getitem__(self, index: int | slice, /) -> PyTreeEntry | Self:
        """Index an entry, or slice a sub-accessor."""
        if isinstance(index, slice):
            return self.__class__(super().__getitem__(index))
        return super().__getitem__(index)

    def __add__(self, other: object, /) -> Self:  # type: ignore[override]
        """Append an entry or another accessor."""
        if isinstance(other, PyTreeEntry):
            return self.__class__((*self, other))
        if isinstance(other, PyTreeAccessor):
            return self.__class__((*self, *other))
        return NotImplemented

    def __mul__(self, value: int, /) -> Self:  # type: ignore[override]
        """Repeat the path."""
        return self.__class__(super().__mul__(value))

    def __rmul__(self, value: int, /) -> Self:  # type: ignore[override]
        """Repeat the path."""
        return self.__class__(super().__rmul__(value))

    def __eq__(self, other: object, /) -> bool:
        """Equal only to another accessor with equal entries."""
        return isinstance(other, PyTreeAccessor) and tuple.__eq__(self, other)

    def __ne__(self, other: object, /) -> bool:
        """Negation of :meth:`__eq__`."""
        return not self == other

    def __hash__(self, /) -> int:
        """Hash of the entries."""
        return tuple.__hash__(self)

    def __repr__(self, /) -> str:
        """Return ``PyTreeAccessor(<code>, (<entries>))``."""
        return f'{self.__class__.__name__}({self.codify()}, {tuple.__repr__(self)})'

    def codify(self, /, root: str = '*') -> str:
        """Return Python source that follows the path from the expression ``root``."""
        code = root
        for item in self:
            code = item.codify(code)
        return code


def _export_to_core() -> None:
    # The core builds path entries and accessors through these classes. They are also
    # attributes of `_C`, as in optree 0.20.0.
    for name in __all__:
        cls = globals()[name]
        cls.__module__ = 'optree'
        setattr(_C, name, cls)
    _C._set_accessor_classes(
        SequenceEntry,
        MappingEntry,
        NamedTupleEntry,
        StructSequenceEntry,
        PyTreeAccessor,
    )


_export_to_core()
del _export_to_core
