# Type stub of the compiled core module `optree._C` (Cython bindings over the C++ core).

import builtins
import enum
from collections.abc import Callable, Collection, Iterable, Iterator
from types import MappingProxyType
from typing import Any, ClassVar, Final, Self, SupportsIndex, SupportsInt, final, overload

from optree.typing import (
    FlattenFunc,
    MetaData,
    PyTree,
    PyTreeAccessor,
    PyTreeEntry,
    T,
    U,
    UnflattenFunc,
)

# --- constants ---------------------------------------------------------------------------------

Py_TPFLAGS_BASETYPE: Final[int]  # type flag: the type can be subclassed
PyStructSequence_UnnamedField: Final[str]  # name reported for unnamed structseq slots

BUILDTIME_METADATA: Final[MappingProxyType[str, Any]]
PY_VERSION: Final[str]
PY_VERSION_HEX: Final[int]
Py_DEBUG: Final[bool]
Py_GIL_DISABLED: Final[bool]
OPTREE_HAS_SUBINTERPRETER_SUPPORT: Final[bool]
OPTREE_HAS_READ_WRITE_LOCK: Final[bool]
OPTREE_HAS_FROZENDICT: Final[bool]
MAX_RECURSION_DEPTH: Final[int]

@final
class InternalError(SystemError): ...

@final
class PyTreeKind(enum.IntEnum):
    CUSTOM = 0
    LEAF = 1
    NONE = 2
    TUPLE = 3
    LIST = 4
    DICT = 5
    NAMEDTUPLE = 6
    ORDEREDDICT = 7
    DEFAULTDICT = 8
    DEQUE = 9
    STRUCTSEQUENCE = 10
    FROZENDICT = 11

    NUM_KINDS: ClassVar[int]

# --- tree structures ---------------------------------------------------------------------------

@final
class PyTreeSpec:
    num_nodes: int
    num_leaves: int
    num_children: int
    none_is_leaf: bool
    namespace: str
    type: builtins.type | None
    kind: PyTreeKind
    def unflatten(self, leaves: Iterable[T], /) -> PyTree[T]: ...
    def flatten_up_to(self, tree: PyTree[T], /) -> list[PyTree[T]]: ...
    def broadcast_to_common_suffix(self, other: Self, /) -> Self: ...
    def transform(
        self,
        /,
        f_node: Callable[[Self], Self] | None = None,
        f_leaf: Callable[[Self], Self] | None = None,
    ) -> Self: ...
    def compose(self, inner: Self, /) -> Self: ...
    @overload
    def traverse(
        self,
        leaves: Iterable[T],
        /,
        f_node: None = None,
        f_leaf: Callable[[T], U] | None = None,
    ) -> PyTree[U]: ...
    @overload
    def traverse(
        self,
        leaves: Iterable[T],
        /,
        f_node: Callable[[Collection[U]], U] = ...,
        f_leaf: Callable[[T], U] | None = None,
    ) -> U: ...
    @overload
    def walk(
        self,
        leaves: Iterable[T],
        /,
        f_node: None = None,
        f_leaf: Callable[[T], U] | None = None,
    ) -> PyTree[U]: ...
    @overload
    def walk(
        self,
        leaves: Iterable[T],
        /,
        f_node: Callable[[builtins.type, MetaData, tuple[U, ...]], U] = ...,
        f_leaf: Callable[[T], U] | None = None,
    ) -> U: ...
    def paths(self, /) -> list[tuple[Any, ...]]: ...
    def accessors(self, /) -> list[PyTreeAccessor]: ...
    def entries(self, /) -> list[Any]: ...
    def entry(self, index: SupportsInt | SupportsIndex, /) -> Any: ...
    def children(self, /) -> list[Self]: ...
    def child(self, index: SupportsInt | SupportsIndex, /) -> Self: ...
    def one_level(self, /) -> Self | None: ...
    def is_leaf(self, /, *, strict: bool = True) -> bool: ...
    def is_one_level(self, /) -> bool: ...
    def is_prefix(self, other: Self, /, *, strict: bool = False) -> bool: ...
    def is_suffix(self, other: Self, /, *, strict: bool = False) -> bool: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __ne__(self, other: object, /) -> bool: ...
    def __lt__(self, other: object, /) -> bool: ...
    def __le__(self, other: object, /) -> bool: ...
    def __gt__(self, other: object, /) -> bool: ...
    def __ge__(self, other: object, /) -> bool: ...
    def __hash__(self, /) -> int: ...
    def __len__(self, /) -> int: ...

@final
class PyTreeIter(Iterator[T]):
    def __init__(
        self,
        tree: PyTree[T],
        /,
        leaf_predicate: Callable[[T], bool] | None = None,
        none_is_leaf: bool = False,
        namespace: str = '',
    ) -> None: ...
    def __iter__(self, /) -> Self: ...
    def __next__(self, /) -> T: ...

# --- flattening --------------------------------------------------------------------------------

def flatten(
    tree: PyTree[T],
    /,
    leaf_predicate: Callable[[T], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> tuple[list[T], PyTreeSpec]: ...
def _set_accessor_classes(
    sequence_entry: type[PyTreeEntry],
    mapping_entry: type[PyTreeEntry],
    namedtuple_entry: type[PyTreeEntry],
    structseq_entry: type[PyTreeEntry],
    accessor: type[PyTreeAccessor],
    /,
) -> None: ...
def _flatten(
    tree: PyTree[T],
    leaf_predicate: Callable[[T], bool] | None,
    none_is_leaf: bool,
    namespace: str,
    /,
) -> tuple[list[T], PyTreeSpec]: ...
def _flatten_with_path(
    tree: PyTree[T],
    leaf_predicate: Callable[[T], bool] | None,
    none_is_leaf: bool,
    namespace: str,
    /,
) -> tuple[list[tuple[Any, ...]], list[T], PyTreeSpec]: ...
def _is_leaf(
    obj: T,
    leaf_predicate: Callable[[T], bool] | None,
    none_is_leaf: bool,
    namespace: str,
    /,
) -> bool: ...
def _leaves(
    tree: PyTree[T],
    leaf_predicate: Callable[[T], bool] | None,
    none_is_leaf: bool,
    namespace: str,
    /,
) -> list[T]: ...
def _structure(
    tree: PyTree[T],
    leaf_predicate: Callable[[T], bool] | None,
    none_is_leaf: bool,
    namespace: str,
    /,
) -> PyTreeSpec: ...
def flatten_with_path(
    tree: PyTree[T],
    /,
    leaf_predicate: Callable[[T], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> tuple[list[tuple[Any, ...]], list[T], PyTreeSpec]: ...

_MAP_PLAIN: Final[int]
_MAP_WITH_PATH: Final[int]
_MAP_WITH_ACCESSOR: Final[int]

def _map_leaves(
    func: Callable[..., Any],
    tree: PyTree[T],
    rests: tuple[Any, ...],
    leaf_predicate: Callable[[T], bool] | None,
    none_is_leaf: bool,
    namespace: str,
    prefix: int,
    rebuild: bool,
    /,
) -> Any: ...
def _map_matched(
    func: Callable[..., Any],
    treespec: PyTreeSpec,
    trees: tuple[Any, ...],
    prefix: int,
    rebuild: bool,
    /,
) -> Any: ...

# --- treespec constructors ---------------------------------------------------------------------

def make_leaf(none_is_leaf: bool = False, namespace: str = '') -> PyTreeSpec: ...
def make_none(none_is_leaf: bool = False, namespace: str = '') -> PyTreeSpec: ...
def make_from_collection(
    collection: Collection[PyTreeSpec],
    /,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> PyTreeSpec: ...

# --- predicates --------------------------------------------------------------------------------

def is_leaf(
    obj: T,
    /,
    leaf_predicate: Callable[[T], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> bool: ...
def is_namedtuple(obj: object | type, /) -> bool: ...
def is_namedtuple_instance(obj: object, /) -> bool: ...
def is_namedtuple_class(cls: object, /) -> bool: ...
def namedtuple_fields(obj: tuple | type[tuple], /) -> tuple[str, ...]: ...
def is_structseq(obj: object | type, /) -> bool: ...
def is_structseq_instance(obj: object, /) -> bool: ...
def is_structseq_class(cls: object, /) -> bool: ...
def structseq_fields(obj: tuple | type[tuple], /) -> tuple[str, ...]: ...

# --- registry ----------------------------------------------------------------------------------

def register_node(
    cls: type[Collection[T]],
    /,
    flatten_func: FlattenFunc[T],
    unflatten_func: UnflattenFunc[T],
    path_entry_type: type[PyTreeEntry],
    namespace: str = '',
    field_layout: tuple[tuple[str, ...], ...] | None = None,
) -> None: ...
def unregister_node(cls: type, /, namespace: str = '') -> None: ...
def is_dict_insertion_ordered(
    namespace: str = '',
    inherit_global_namespace: bool = True,
) -> bool: ...
def set_dict_insertion_ordered(mode: bool, /, namespace: str = '') -> None: ...
def get_registry_size(namespace: str | None = None) -> int: ...

# --- interpreters ------------------------------------------------------------------------------

def get_num_interpreters_seen() -> int: ...
def get_num_interpreters_alive() -> int: ...
def get_alive_interpreter_ids() -> set[int]: ...
def is_current_interpreter_main() -> bool: ...
def get_current_interpreter_id() -> int: ...
def get_main_interpreter_id() -> int: ...

# --- transfer (optree.parallel) ----------------------------------------------------------------

def _transfer_encode_structure(
    treespec: PyTreeSpec,
    locate: Callable[[type], tuple[str, str, int]],
    dumps: Callable[[object], bytes],
    /,
) -> bytes: ...
def _transfer_decode_structure(
    encoding: bytes,
    resolve: Callable[[str, str, int, str], object],
    loads: Callable[[bytes], object],
    missing_error: type[BaseException],
    /,
) -> PyTreeSpec: ...
def _transfer_same_structure(a: PyTreeSpec, b: PyTreeSpec, /) -> bool: ...
def _transfer_registrations_current(treespec: PyTreeSpec, /) -> bool: ...
def _transfer_encode_leaves(
    leaves: list[Any] | tuple[Any, ...],
    dumps: Callable[[object], bytes],
    /,
) -> tuple[bytes, tuple[Any, ...]]: ...
def _transfer_decode_leaves(
    data: bytes,
    objects: tuple[Any, ...],
    loads: Callable[[bytes], object],
    /,
) -> list[Any]: ...
def _transfer_match_leaves(
    treespec: PyTreeSpec,
    tree: object,
    none_is_leaf: bool,
    namespace: str,
    insertion_ordered: bool,
    dumps: Callable[[object], bytes],
    /,
) -> tuple[bytes, tuple[Any, ...]] | None: ...
