# Thin bindings over the C++ core: argument conversion and forwarding only.
# The algorithms live in csrc/; docs/architecture.rst describes the layering.
from cpython.number cimport PyNumber_Check
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_DECREF
from libcpp cimport bool as cbool
from libcpp.optional cimport optional
from libcpp.string cimport string
from libcpp.utility cimport move
from libcpp.vector cimport vector

from optree.core cimport (
    AccessorTypes,
    FlattenOptions,
    MapRequest,
    SpecCallback,
    LeafIterator,
    Ref,
    TreeSpec,
    alive_interpreter_ids,
    bool_slot,
    create_current_shard,
    current_interpreter_id,
    current_shard,
    destroy_current_shard,
    flatten_leaves,
    install_iterator_gc,
    install_treespec_gc,
    is_dict_insertion_ordered as core_is_dict_insertion_ordered,
    is_leaf_object,
    is_namedtuple_class as core_is_namedtuple_class,
    is_structseq_class as core_is_structseq_class,
    kGilDisabled,
    kHasExitHook,
    kPyDebug,
    kMaxRecursionDepth,
    main_interpreter_id,
    map_leaves as core_map_leaves,
    namedtuple_fields as core_namedtuple_fields,
    new_instance,
    num_interpreters_alive,
    num_interpreters_seen,
    register_exit_hook,
    register_node as core_register_node,
    registry_size,
    release_module_reference,
    structseq_fields as core_structseq_fields,
    tuple_items,
    unregister_node as core_unregister_node,
)

import copyreg
import enum
import operator
import sys
import types
import warnings

cdef extern from "Python.h":
    const char* UNNAMED_FIELD_NAME "PyStructSequence_UnnamedField"
    const unsigned long Py_TPFLAGS_BASETYPE_VALUE "Py_TPFLAGS_BASETYPE"
    const char* PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t* size) except NULL

cdef extern from *:
    # Cython's module lookup table and the macros that say whether this build has it exist only
    # in the generated file: this shim hands them to csrc/module_lifetime.cpp.
    """
    #include "optree/module_lifetime.h"
    #if defined(CYTHON_USE_MODULE_STATE) && CYTHON_USE_MODULE_STATE && \
        defined(CYTHON_PEP489_MULTI_PHASE_INIT) && CYTHON_PEP489_MULTI_PHASE_INIT && \
        CYTHON_HEX_VERSION >= 0x03010000 && CYTHON_HEX_VERSION < 0x03040000
    static PyObject* __Pyx_State_FindModule(void*);
    static int __Pyx_State_AddModule(PyObject* module, void*);
    static int optree_take_module_lifetime(PyObject* module_type) {
      return optree::take_module_lifetime(module_type,
                                          {__Pyx_State_FindModule, __Pyx_State_AddModule});
    }
    #else
    static int optree_take_module_lifetime(PyObject*) { return 0; }
    #endif
    """
    int optree_take_module_lifetime(object module_type) except -1


cdef inline object steal(Ref ref):
    cdef PyObject* ptr = ref.release()
    obj = <object>ptr
    Py_DECREF(obj)
    return obj


cdef string namespace_of_other(object namespace) except *:
    # What optree accepts as a namespace: str and its subclasses (read as the string they hold,
    # without calling their methods), and UTF-8 bytes-like objects (bytes, bytearray).
    cdef const char* data
    cdef Py_ssize_t size
    if isinstance(namespace, str):
        try:
            data = PyUnicode_AsUTF8AndSize(namespace, &size)
        except UnicodeError:
            raise TypeError(
                f'The namespace must be a UTF-8 encodable string, got {namespace!r}.'
            ) from None
        return string(data, size)
    if isinstance(namespace, (bytes, bytearray)):
        try:
            return namespace_of((<object>namespace).decode('utf-8'))
        except UnicodeError:
            pass
    raise TypeError(f'The namespace must be a string, got {namespace!r}.')


cdef inline string namespace_of(object namespace) except *:
    if type(namespace) is str and not namespace:
        return string()
    return namespace_of_other(namespace)


cdef cbool bool_of_other(object value, const char* name) except *:
    # See bool_slot() in bindings_support.h: anything else is a TypeError, as in optree.
    cdef int result = bool_slot(value)
    if result < 0:
        raise TypeError(f'The `{name.decode()}` argument must be a bool, got {value!r}.')
    return result != 0


# `name` is a C string: a str constant would cost a module state lookup on every call.
cdef inline cbool bool_of(object value, const char* name) except *:
    if value is True:
        return True
    if value is False or value is None:
        return False
    return bool_of_other(value, name)


cdef inline FlattenOptions make_options(object leaf_predicate, object none_is_leaf,
                                        object namespace) except *:
    cdef FlattenOptions options
    if leaf_predicate is None:
        options.leaf_predicate = NULL
    else:
        options.leaf_predicate = <PyObject*>leaf_predicate
    options.none_is_leaf = bool_of(none_is_leaf, b'none_is_leaf')
    options.ns = namespace_of(namespace)
    return options


# ------------------------------------------------------------------------------- constants

MAX_RECURSION_DEPTH = kMaxRecursionDepth
Py_TPFLAGS_BASETYPE = Py_TPFLAGS_BASETYPE_VALUE
PyStructSequence_UnnamedField = UNNAMED_FIELD_NAME.decode('utf-8')
PY_VERSION = sys.version.split()[0]
PY_VERSION_HEX = sys.hexversion
Py_DEBUG = kPyDebug
Py_GIL_DISABLED = kGilDisabled
OPTREE_HAS_SUBINTERPRETER_SUPPORT = True
OPTREE_HAS_READ_WRITE_LOCK = False  # readers take no lock at all
OPTREE_HAS_FROZENDICT = False
BUILDTIME_METADATA = types.MappingProxyType({
    'PY_VERSION': PY_VERSION,
    'PY_VERSION_HEX': PY_VERSION_HEX,
    'Py_DEBUG': Py_DEBUG,
    'Py_GIL_DISABLED': Py_GIL_DISABLED,
    'OPTREE_HAS_SUBINTERPRETER_SUPPORT': OPTREE_HAS_SUBINTERPRETER_SUPPORT,
    'OPTREE_HAS_READ_WRITE_LOCK': OPTREE_HAS_READ_WRITE_LOCK,
    'OPTREE_HAS_FROZENDICT': OPTREE_HAS_FROZENDICT,
})


class InternalError(SystemError):
    """An internal invariant of optree was broken; please report it."""


class PyTreeKind(enum.IntEnum):
    """The kind of a pytree node."""

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


PyTreeKind.NUM_KINDS = 12
PyTreeKind.__module__ = 'optree'
InternalError.__module__ = 'optree._C'
_KINDS = tuple(PyTreeKind)


# ------------------------------------------------------------------------------- treespec

cdef PyTreeSpec wrap(TreeSpec& spec):
    # PyTreeSpec.__new__(PyTreeSpec), minus a module state lookup (of the empty tuple).
    cdef PyTreeSpec result = <PyTreeSpec>new_instance(<PyTypeObject*>PyTreeSpec)
    result.spec = move(spec)
    return result


cdef Py_ssize_t child_index(object index, str method) except? -1:
    # Any number that converts to an int exactly or by truncation (__index__ or __int__), as
    # optree accepts; never a float or a string.
    value = index
    if type(index) is not int:
        try:
            if isinstance(index, float) or not PyNumber_Check(index):
                raise TypeError
            try:
                value = operator.index(index)
            except Exception:
                value = int(index)
        except Exception:
            value = None
    try:
        return value
    except (TypeError, OverflowError):
        raise TypeError(
            f'{method}() expects an index that fits a C ssize_t, got {index!r}.'
        ) from None


cdef inline PyObject* optional_callable(object func):
    if func is None:
        return NULL
    return <PyObject*>func


_ACCESSOR_CLASSES = None


def _set_accessor_classes(sequence_entry, mapping_entry, namedtuple_entry, structseq_entry,
                          accessor, /):
    """Hands the core the classes it builds path entries and accessors with; optree.accessors
    calls it once, at import."""
    global _ACCESSOR_CLASSES
    # The entry class of each builtin kind, by kind index.
    entry_types = (None, None, None, sequence_entry, sequence_entry, mapping_entry,
                   namedtuple_entry, mapping_entry, mapping_entry, sequence_entry,
                   structseq_entry, mapping_entry)
    _ACCESSOR_CLASSES = (entry_types, accessor)


cdef tuple accessor_classes():
    if _ACCESSOR_CLASSES is None:
        raise InternalError('optree.accessors has not handed its classes to optree._C.')
    return _ACCESSOR_CLASSES


cdef int call_spec_function(void* context, const TreeSpec& input, TreeSpec* output) except -1:
    cdef TreeSpec copy = input
    argument = wrap(copy)
    result = (<object>context)(argument)
    if not isinstance(result, PyTreeSpec):
        raise TypeError(
            f'Expected the PyTreeSpec transform function returns a PyTreeSpec, got {result!r} '
            f'(input: {argument!r}).'
        )
    output[0] = (<PyTreeSpec>result).spec
    return 0


cdef class PyTreeSpec:
    """Immutable description of a pytree's structure."""

    cdef TreeSpec spec
    # Always None. An object attribute makes Cython build a GC type (tracked, untracked in
    # tp_dealloc); install_treespec_gc() chains the traversal of `spec` into its slots.
    cdef object _gc_anchor
    cdef object __weakref__

    def __init__(self, *args, **kwargs):
        raise TypeError('optree.PyTreeSpec: No constructor defined!')

    def unflatten(self, leaves, /):
        """Rebuilds a pytree of this structure from an iterable of leaves."""
        return steal(self.spec.unflatten(<PyObject*>leaves))

    def flatten_up_to(self, tree, /):
        """Flattens `tree` up to this structure, returning the subtrees at its leaves."""
        return steal(self.spec.flatten_up_to(<PyObject*>tree))

    def compose(self, PyTreeSpec inner not None, /):
        """Replaces each leaf of this structure with `inner`."""
        cdef TreeSpec result = self.spec.compose(inner.spec)
        return wrap(result)

    def paths(self, /):
        """The path (a tuple of entries) to each leaf."""
        return steal(self.spec.paths())

    def entries(self, /):
        """The entries of the root's children."""
        return steal(self.spec.entries())

    def entry(self, index, /):
        """The entry of the root's child at `index`."""
        cdef Py_ssize_t i = child_index(index, 'entry')
        if i < 0:
            i += self.spec.num_children()
        return steal(self.spec.entry(i))

    def children(self, /):
        """The treespecs of the root's children."""
        cdef vector[TreeSpec] children = self.spec.children()
        return [wrap(child) for child in children]

    def child(self, index, /):
        """The treespec of the root's child at `index`."""
        cdef Py_ssize_t i = child_index(index, 'child')
        if i < 0:
            i += self.spec.num_children()
        cdef TreeSpec result = self.spec.child(i)
        return wrap(result)

    def is_leaf(self, /, *, strict=True):
        """Whether this structure is a single leaf (or, non-strict, a single node)."""
        return self.spec.is_leaf(bool_of(strict, b'strict'))

    def is_prefix(self, PyTreeSpec other not None, /, *, strict=False):
        """Whether this structure is a prefix of `other`."""
        return self.spec.is_prefix(other.spec, bool_of(strict, b'strict'))

    def is_suffix(self, PyTreeSpec other not None, /, *, strict=False):
        """Whether `other` is a prefix of this structure."""
        return other.spec.is_prefix(self.spec, bool_of(strict, b'strict'))

    def traverse(self, leaves, /, f_node=None, f_leaf=None):
        """Rebuilds from leaves, mapping leaves through f_leaf and nodes through f_node."""
        return steal(self.spec.traverse(<PyObject*>leaves, optional_callable(f_node),
                                        optional_callable(f_leaf)))

    def walk(self, leaves, /, f_node=None, f_leaf=None):
        """Folds the structure bottom-up with f_node(type, metadata, children)."""
        return steal(self.spec.walk(<PyObject*>leaves, optional_callable(f_node),
                                    optional_callable(f_leaf)))

    def transform(self, /, f_node=None, f_leaf=None):
        """A new treespec with each one-level node and each leaf replaced by the functions."""
        cdef SpecCallback node_callback = NULL
        cdef SpecCallback leaf_callback = NULL
        if f_node is not None:
            node_callback = call_spec_function
        if f_leaf is not None:
            leaf_callback = call_spec_function
        cdef TreeSpec result = self.spec.transform(node_callback, <void*>f_node,
                                                   leaf_callback, <void*>f_leaf)
        return wrap(result)

    def is_one_level(self, /):
        """Whether the root is a node whose children are all leaves."""
        return self.spec.is_one_level()

    def one_level(self, /):
        """The root node with leaf children, or None if this is a leaf."""
        if self.spec.is_leaf(True):
            return None
        cdef TreeSpec result = self.spec.one_level()
        return wrap(result)

    def broadcast_to_common_suffix(self, PyTreeSpec other not None, /):
        """The smallest structure of which both treespecs are prefixes."""
        cdef TreeSpec result = self.spec.broadcast_to_common_suffix(other.spec)
        return wrap(result)

    def accessors(self, /):
        """The accessor of each leaf."""
        entry_types, accessor_type = accessor_classes()
        return steal(self.spec.accessors(<PyObject*>entry_types, <PyObject*>accessor_type,
                                         <PyObject*>_KINDS))

    @property
    def num_leaves(self):
        """Number of leaves in the structure."""
        return self.spec.num_leaves()

    @property
    def num_nodes(self):
        """Number of nodes in the structure, leaves included."""
        return self.spec.num_nodes()

    @property
    def num_children(self):
        """Number of children of the root node."""
        return self.spec.num_children()

    @property
    def none_is_leaf(self):
        """Whether ``None`` counted as a leaf when the structure was made."""
        return self.spec.none_is_leaf()

    @property
    def namespace(self):
        """Registry namespace the structure was made with (``''``: the global one)."""
        return self.spec.ns().decode('utf-8')

    @property
    def type(self):
        """Type of the root node; ``None`` when the root is a leaf."""
        return <object>self.spec.type_object()

    @property
    def kind(self):
        """The :class:`PyTreeKind` of the root node."""
        return _KINDS[self.spec.root_kind()]

    def __eq__(self, other):
        if not isinstance(other, PyTreeSpec):
            return NotImplemented
        return self.spec.equals((<PyTreeSpec>other).spec)

    def __ne__(self, other):
        if not isinstance(other, PyTreeSpec):
            return NotImplemented
        return not self.spec.equals((<PyTreeSpec>other).spec)

    def __lt__(self, other):
        if not isinstance(other, PyTreeSpec):
            return NotImplemented
        return self.spec.is_prefix((<PyTreeSpec>other).spec, True)

    def __le__(self, other):
        if not isinstance(other, PyTreeSpec):
            return NotImplemented
        return self.spec.is_prefix((<PyTreeSpec>other).spec, False)

    def __gt__(self, other):
        if not isinstance(other, PyTreeSpec):
            return NotImplemented
        return (<PyTreeSpec>other).spec.is_prefix(self.spec, True)

    def __ge__(self, other):
        if not isinstance(other, PyTreeSpec):
            return NotImplemented
        return (<PyTreeSpec>other).spec.is_prefix(self.spec, False)

    def __hash__(self):
        return self.spec.hash()

    def __len__(self):
        return self.spec.num_leaves()

    def __repr__(self):
        return self.spec.repr().decode('utf-8')

    def __reduce__(self):
        # optree 0.20.0's reduction, at every protocol: PyTreeSpec.__new__, then __setstate__.
        return (copyreg.__newobj__, (type(self),), steal(self.spec.pickle_state()))

    def __getstate__(self):
        return steal(self.spec.pickle_state())

    def __setstate__(self, state, /):
        if self.spec.initialized():
            raise TypeError('PyTreeSpec objects are immutable: __setstate__ only initializes a '
                            'new, uninitialized object.')
        self.spec = TreeSpec.from_pickle_state(<PyObject*>state)


cdef class PyTreeIter:
    """Iterator over the leaves of a pytree, depth first, left to right."""

    cdef LeafIterator* iterator
    cdef object _gc_anchor  # always None; see PyTreeSpec._gc_anchor
    cdef object __weakref__

    def __cinit__(self, tree, /, leaf_predicate=None, none_is_leaf=False, namespace=''):
        self.iterator = new LeafIterator(<PyObject*>tree,
                                         make_options(leaf_predicate, none_is_leaf, namespace))

    def __dealloc__(self):
        del self.iterator

    def __iter__(self):
        return self

    def __next__(self):
        cdef Ref leaf = self.iterator.next()
        if leaf.get() == NULL:
            raise StopIteration
        return steal(leaf)


# ---------------------------------------------------------------------------- operations

cdef inline tuple flatten_impl(tree, leaf_predicate, none_is_leaf, namespace):
    cdef FlattenOptions options = make_options(leaf_predicate, none_is_leaf, namespace)
    cdef Ref leaves
    cdef TreeSpec spec = TreeSpec.flatten(<PyObject*>tree, options, &leaves, NULL)
    return steal(leaves), wrap(spec)


def flatten(tree, /, leaf_predicate=None, none_is_leaf=False, namespace=''):
    """Flattens a pytree into (leaves, treespec)."""
    return flatten_impl(tree, leaf_predicate, none_is_leaf, namespace)


# The entry points of optree.ops take their arguments positionally only: a function that
# accepts keywords looks its argument names up (module state) on every call.

def _flatten(tree, leaf_predicate, none_is_leaf, namespace, /):
    """flatten() with every argument given positionally."""
    return flatten_impl(tree, leaf_predicate, none_is_leaf, namespace)


def _leaves(tree, leaf_predicate, none_is_leaf, namespace, /):
    """The leaves of a pytree, as flatten() returns them, without building the treespec."""
    return steal(flatten_leaves(<PyObject*>tree,
                                make_options(leaf_predicate, none_is_leaf, namespace)))


def _structure(tree, leaf_predicate, none_is_leaf, namespace, /):
    """The treespec of a pytree, as flatten() returns it, without collecting the leaves."""
    cdef FlattenOptions options = make_options(leaf_predicate, none_is_leaf, namespace)
    cdef TreeSpec spec = TreeSpec.flatten(<PyObject*>tree, options, NULL, NULL)
    return wrap(spec)


cdef inline tuple flatten_with_path_impl(tree, leaf_predicate, none_is_leaf, namespace):
    cdef FlattenOptions options = make_options(leaf_predicate, none_is_leaf, namespace)
    cdef Ref leaves
    cdef Ref paths
    cdef TreeSpec spec = TreeSpec.flatten(<PyObject*>tree, options, &leaves, &paths)
    return steal(paths), steal(leaves), wrap(spec)


def flatten_with_path(tree, /, leaf_predicate=None, none_is_leaf=False, namespace=''):
    """Flattens a pytree into (paths, leaves, treespec)."""
    return flatten_with_path_impl(tree, leaf_predicate, none_is_leaf, namespace)


def _flatten_with_path(tree, leaf_predicate, none_is_leaf, namespace, /):
    """flatten_with_path() with every argument given positionally."""
    return flatten_with_path_impl(tree, leaf_predicate, none_is_leaf, namespace)


# What tree_map and its variants pass to func before each leaf (_map_leaves, _map_matched).
cdef enum:
    PREFIX_NONE = 0
    PREFIX_PATH = 1
    PREFIX_ACCESSOR = 2

_MAP_PLAIN = PREFIX_NONE
_MAP_WITH_PATH = PREFIX_PATH
_MAP_WITH_ACCESSOR = PREFIX_ACCESSOR


cdef object run_map(TreeSpec& spec, func, PyObject* leaves, tuple trees, int prefix,
                    PyObject* paths, cbool rebuild):
    cdef MapRequest request
    cdef AccessorTypes classes
    request.func = <PyObject*>func
    request.leaves = leaves
    request.trees = tuple_items(trees)
    request.num_trees = len(trees)
    request.rebuild = rebuild
    if prefix == PREFIX_PATH:
        request.with_paths = True
        request.paths = paths
    elif prefix == PREFIX_ACCESSOR:
        entry_types, accessor_type = accessor_classes()
        classes.entry_types = <PyObject*>entry_types
        classes.accessor_type = <PyObject*>accessor_type
        classes.kinds = <PyObject*>_KINDS
        request.accessors = &classes
    elif prefix != PREFIX_NONE:
        raise ValueError(f'unknown map prefix {prefix}')
    return steal(core_map_leaves(spec, request))


def _map_leaves(func, tree, tuple rests not None, leaf_predicate, none_is_leaf, namespace,
                int prefix, cbool rebuild, /):
    """tree_map and its variants in one pass: flattens `tree`, matches each of `rests` against
    its treespec as flatten_up_to(), calls func(<path or accessor>, leaf, *subtrees) per leaf and
    rebuilds from the results (or, without `rebuild`, discards them and returns `tree`)."""
    cdef FlattenOptions options = make_options(leaf_predicate, none_is_leaf, namespace)
    cdef Ref leaves
    cdef Ref paths
    cdef TreeSpec spec = TreeSpec.flatten(<PyObject*>tree, options, &leaves,
                                          &paths if prefix == PREFIX_PATH else NULL)
    result = run_map(spec, func, leaves.get(), rests, prefix, paths.get(), rebuild)
    return result if rebuild else tree


def _map_matched(func, PyTreeSpec treespec not None, tuple trees not None, int prefix,
                 cbool rebuild, /):
    """Like _map_leaves(), with every tree matched against `treespec` (tree_broadcast_map)."""
    return run_map(treespec.spec, func, NULL, trees, prefix, NULL, rebuild)


def make_leaf(none_is_leaf=False, namespace=''):
    """A treespec of a single leaf."""
    namespace_of(namespace)  # validated as optree does; a leaf records no namespace
    cdef TreeSpec spec = TreeSpec.make_leaf(bool_of(none_is_leaf, b'none_is_leaf'))
    return wrap(spec)


def make_none(none_is_leaf=False, namespace=''):
    """A treespec of None (a leaf when none_is_leaf is set)."""
    namespace_of(namespace)  # validated as optree does; None records no namespace
    cdef TreeSpec spec = TreeSpec.make_none(bool_of(none_is_leaf, b'none_is_leaf'))
    return wrap(spec)


def make_from_collection(collection, /, none_is_leaf=False, namespace=''):
    """A treespec whose root is `collection`'s node and whose children are its treespecs."""
    cdef FlattenOptions options = make_options(None, none_is_leaf, namespace)
    cdef optional[vector[Ref]] children = TreeSpec.collection_children(<PyObject*>collection,
                                                                       options)
    cdef vector[const TreeSpec*] child_specs
    cdef vector[Ref]* raw_children
    cdef TreeSpec spec
    if not children.has_value():
        if collection is None and not options.none_is_leaf:
            spec = TreeSpec.make_none(False)
        else:
            warnings.warn('PyTreeSpec::MakeFromCollection() is called on a leaf.',
                          stacklevel=2)
            spec = TreeSpec.make_leaf(options.none_is_leaf)
        return wrap(spec)
    kept = []
    raw_children = &children.value()
    for i in range(raw_children.size()):
        child = <object>raw_children[0][i].get()
        if not isinstance(child, PyTreeSpec):
            raise ValueError(
                f'Expected a(n) {type(collection).__name__} of PyTreeSpec(s), got {collection!r}.'
            )
        kept.append(child)
        child_specs.push_back(&(<PyTreeSpec>child).spec)
    spec = TreeSpec.from_collection(<PyObject*>collection, child_specs, options)
    return wrap(spec)


def is_leaf(obj, /, leaf_predicate=None, none_is_leaf=False, namespace=''):
    """Whether `obj` is a leaf (has no children) under these options."""
    return is_leaf_object(<PyObject*>obj, make_options(leaf_predicate, none_is_leaf, namespace))


def _is_leaf(obj, leaf_predicate, none_is_leaf, namespace, /):
    """is_leaf() with every argument given positionally."""
    return is_leaf_object(<PyObject*>obj, make_options(leaf_predicate, none_is_leaf, namespace))


def is_namedtuple(obj, /):
    """Whether `obj` is a namedtuple instance or class."""
    cls = obj if isinstance(obj, type) else type(obj)
    return core_is_namedtuple_class(<PyObject*>cls)


def is_namedtuple_instance(obj, /):
    """Whether `obj` is an instance of a namedtuple class."""
    cls = type(obj)
    return core_is_namedtuple_class(<PyObject*>cls)


def is_namedtuple_class(cls, /):
    """Whether `cls` is a namedtuple class."""
    return core_is_namedtuple_class(<PyObject*>cls)


def namedtuple_fields(obj, /):
    """The field names of a namedtuple instance or class."""
    return steal(core_namedtuple_fields(<PyObject*>obj))


def is_structseq(obj, /):
    """Whether `obj` is a PyStructSequence instance or class."""
    cls = obj if isinstance(obj, type) else type(obj)
    return core_is_structseq_class(<PyObject*>cls)


def is_structseq_instance(obj, /):
    """Whether `obj` is an instance of a PyStructSequence class."""
    cls = type(obj)
    return core_is_structseq_class(<PyObject*>cls)


def is_structseq_class(cls, /):
    """Whether `cls` is a PyStructSequence class."""
    return core_is_structseq_class(<PyObject*>cls)


def structseq_fields(obj, /):
    """The field names of a PyStructSequence instance or class."""
    return steal(core_structseq_fields(<PyObject*>obj))


# ------------------------------------------------------------------------------- registry

def register_node(cls, /, flatten_func, unflatten_func, path_entry_type, namespace='',
                  field_layout=None):
    """Registers `cls` as a pytree node type in `namespace` ('' = global).

    `field_layout`, when given, tells the core what the two functions do, so that it reads and
    rebuilds instances itself: (child names, child keywords, metadata names, metadata
    keywords), four tuples of str (see FieldLayout in csrc/include/optree/registry.h).
    """
    core_register_node(<PyObject*>cls, <PyObject*>flatten_func, <PyObject*>unflatten_func,
                       <PyObject*>path_entry_type, namespace_of(namespace),
                       <PyObject*>NULL if field_layout is None else <PyObject*>field_layout)


def unregister_node(cls, /, namespace=''):
    """Removes the registration of `cls` in `namespace` ('' = global)."""
    core_unregister_node(<PyObject*>cls, namespace_of(namespace))


def is_dict_insertion_ordered(namespace='', inherit_global_namespace=True):
    """Whether dicts flatten in insertion order in `namespace`."""
    return core_is_dict_insertion_ordered(
        namespace_of(namespace), bool_of(inherit_global_namespace, b'inherit_global_namespace'))


def set_dict_insertion_ordered(mode, /, namespace=''):
    """Makes dicts flatten in insertion order (or sorted order) in `namespace`."""
    current_shard().set_dict_insertion_ordered(bool_of(mode, b'mode'), namespace_of(namespace))


def get_registry_size(namespace=None):
    """Number of registered node types, builtins included, visible from `namespace`."""
    cdef string ns
    if namespace is None:
        return registry_size(NULL)
    ns = namespace_of(namespace)
    return registry_size(&ns)


def get_num_interpreters_seen():
    """Number of interpreters that have imported optree in this process."""
    return num_interpreters_seen()


def get_num_interpreters_alive():
    """Number of interpreters whose optree registry is alive."""
    return num_interpreters_alive()


def get_alive_interpreter_ids():
    """IDs of the interpreters whose optree registry is alive."""
    return set(alive_interpreter_ids())


def get_current_interpreter_id():
    """ID of the running interpreter."""
    return current_interpreter_id()


def get_main_interpreter_id():
    """ID of the main interpreter."""
    return main_interpreter_id()


def is_current_interpreter_main():
    """Whether the running interpreter is the main one."""
    return current_interpreter_id() == main_interpreter_id()


_holds_lookup_table_reference = True


def _release_registry():
    """Destroys this interpreter's registry; called once at interpreter exit."""
    global _holds_lookup_table_reference
    destroy_current_shard()
    if _holds_lookup_table_reference:
        _holds_lookup_table_reference = False
        release_module_reference(PyTreeSpec)


# ------------------------------------------------------------------------------ transfer

include "_transfer.pxi"


# ------------------------------------------------------------------------ module exec

cdef int install_gc() except -1:
    # The C++ members' offsets in this build's object layouts, measured on a probe of each.
    cdef PyTreeSpec spec = PyTreeSpec.__new__(PyTreeSpec)
    cdef PyTreeIter iterator = PyTreeIter.__new__(PyTreeIter, ())
    install_treespec_gc(<PyTypeObject*>PyTreeSpec, <char*>&spec.spec - <char*><PyObject*>spec)
    install_iterator_gc(<PyTypeObject*>PyTreeIter,
                        <char*>&iterator.iterator - <char*><PyObject*>iterator)
    return 0


def _reclaim_retired_snapshots(phase, info):
    """A gc.callbacks entry: before each collection, free the registry snapshots that no thread
    reads any more (Shard::reclaim_retired)."""
    if phase != 'start':
        return
    try:
        current_shard().reclaim_retired()
    except RuntimeError:  # this interpreter's registry is gone: it is finalizing
        pass


# First: from here on a failing exec leaves a module that is cleared safely (see above).
optree_take_module_lifetime(PyTreeSpec)
create_current_shard()
install_gc()
import gc as _gc
_gc.callbacks.append(_reclaim_retired_snapshots)
del _gc
if kHasExitHook:
    register_exit_hook(PyTreeSpec)
else:
    import atexit
    atexit.register(_release_registry)

for _public in (PyTreeSpec, PyTreeIter):
    try:
        _public.__module__ = 'optree'
    except (TypeError, AttributeError):
        pass
del _public
