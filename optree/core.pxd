# Declarations of the C++ core (csrc/include/optree/*.h), one block per header.
from cpython.object cimport PyObject, PyTypeObject
from libc.stdint cimport int64_t
from libcpp cimport bool
from libcpp.optional cimport optional
from libcpp.string cimport string
from libcpp.vector cimport vector


cdef extern from "optree/common.h" namespace "optree" nogil:
    const Py_ssize_t kMaxRecursionDepth
    void translate_exception()

    cdef cppclass Ref:
        Ref()
        PyObject* get()
        PyObject* release()


cdef extern from "optree/bindings_support.h" namespace "optree":
    int bool_slot(object value)
    object new_instance(PyTypeObject* type)
    PyObject* const* tuple_items(tuple value)
    const bool kGilDisabled
    const bool kPyDebug


cdef extern from "optree/module_lifetime.h" namespace "optree":
    const bool kHasExitHook
    int release_module_reference(object module_type) except -1
    int register_exit_hook(object module_type) except -1


cdef extern from "optree/registry.h" namespace "optree":
    cdef cppclass Shard:
        void register_node(PyObject* type, PyObject* flatten, PyObject* unflatten,
                           PyObject* path_entry_type, const string& ns,
                           PyObject* field_layout) except +translate_exception
        void unregister_node(PyObject* type, const string& ns) except +translate_exception
        void set_dict_insertion_ordered(bool mode, const string& ns) except +translate_exception
        void reclaim_retired() except +translate_exception

    void register_node(PyObject* type, PyObject* flatten, PyObject* unflatten,
                       PyObject* path_entry_type, const string& ns,
                       PyObject* field_layout) except +translate_exception
    void unregister_node(PyObject* type, const string& ns) except +translate_exception

    void create_current_shard() except +translate_exception
    void destroy_current_shard() except +translate_exception
    Shard& current_shard() except +translate_exception
    Py_ssize_t registry_size(const string* ns) except +translate_exception
    bool is_dict_insertion_ordered(
        const string& ns, bool inherit_global) except +translate_exception
    int64_t num_interpreters_seen()
    int64_t num_interpreters_alive() except +translate_exception
    vector[int64_t] alive_interpreter_ids() except +translate_exception
    int64_t current_interpreter_id()
    int64_t main_interpreter_id()


cdef extern from "optree/introspection.h" namespace "optree":
    bool is_namedtuple_class(PyObject* cls) except +translate_exception
    bool is_structseq_class(PyObject* cls) except +translate_exception
    Ref namedtuple_fields(PyObject* obj) except +translate_exception
    Ref structseq_fields(PyObject* obj) except +translate_exception


cdef extern from "optree/treespec.h" namespace "optree":
    cdef cppclass FlattenOptions:
        PyObject* leaf_predicate
        bool none_is_leaf
        string ns

    ctypedef int (*SpecCallback)(void* context, const TreeSpec& input, TreeSpec* output) except -1

    cdef cppclass TreeSpec:
        TreeSpec()
        TreeSpec(const TreeSpec&)
        bool none_is_leaf()
        const string& ns()
        bool initialized()

        Py_ssize_t num_leaves()
        Py_ssize_t num_nodes()
        Py_ssize_t num_children()

        @staticmethod
        TreeSpec flatten(PyObject* tree, const FlattenOptions& options, Ref* leaves_out,
                         Ref* paths_out) except +translate_exception
        @staticmethod
        TreeSpec make_leaf(bool none_is_leaf)
        @staticmethod
        TreeSpec make_none(bool none_is_leaf)
        @staticmethod
        TreeSpec from_collection(PyObject* collection, const vector[const TreeSpec*]& children,
                                 const FlattenOptions& options) except +translate_exception
        @staticmethod
        optional[vector[Ref]] collection_children(
            PyObject* collection, const FlattenOptions& options) except +translate_exception
        @staticmethod
        TreeSpec from_pickle_state(PyObject* state) except +translate_exception

        Ref unflatten(PyObject* leaves) except +translate_exception
        Ref flatten_up_to(PyObject* tree) except +translate_exception
        TreeSpec compose(const TreeSpec& inner) except +translate_exception
        vector[TreeSpec] children() except +translate_exception
        TreeSpec child(Py_ssize_t index) except +translate_exception
        Ref entries() except +translate_exception
        Ref entry(Py_ssize_t index) except +translate_exception
        Ref paths() except +translate_exception
        bool is_leaf(bool strict) except +translate_exception
        bool is_prefix(const TreeSpec& other, bool strict) except +translate_exception
        PyObject* type_object() except +translate_exception
        Ref traverse(PyObject* leaves, PyObject* f_node,
                     PyObject* f_leaf) except +translate_exception
        Ref walk(PyObject* leaves, PyObject* f_node, PyObject* f_leaf) except +translate_exception
        bool is_one_level() except +translate_exception
        TreeSpec one_level() except +translate_exception
        TreeSpec transform(SpecCallback f_node, void* node_context, SpecCallback f_leaf,
                           void* leaf_context) except +translate_exception
        TreeSpec broadcast_to_common_suffix(const TreeSpec& other) except +translate_exception
        Ref accessors(PyObject* entry_types, PyObject* accessor_type,
                      PyObject* kinds) except +translate_exception
        bool equals(const TreeSpec& other) except +translate_exception
        Py_hash_t hash() except +translate_exception
        string repr() except +translate_exception
        Ref pickle_state() except +translate_exception
        int root_kind() except +translate_exception

    bool is_leaf_object(PyObject* obj, const FlattenOptions& options) except +translate_exception
    Ref flatten_leaves(PyObject* tree, const FlattenOptions& options) except +translate_exception


cdef extern from "optree/leaf_iterator.h" namespace "optree":
    cdef cppclass LeafIterator:
        LeafIterator(PyObject* tree, const FlattenOptions& options) except +translate_exception
        Ref next() except +translate_exception


cdef extern from "optree/map.h" namespace "optree":
    cdef cppclass AccessorTypes:
        PyObject* entry_types
        PyObject* accessor_type
        PyObject* kinds

    cdef cppclass MapRequest:
        PyObject* func
        PyObject* leaves
        PyObject* const* trees
        Py_ssize_t num_trees
        PyObject* paths
        bool with_paths
        const AccessorTypes* accessors
        bool rebuild

    Ref map_leaves(const TreeSpec& spec, const MapRequest& request) except +translate_exception


cdef extern from "optree/transfer.h" namespace "optree::transfer":
    Ref transfer_encode_structure "optree::transfer::encode_structure"(
        const TreeSpec& spec, PyObject* locate, PyObject* dumps) except +translate_exception
    TreeSpec transfer_decode_structure "optree::transfer::decode_structure"(
        PyObject* encoding, PyObject* resolve, PyObject* loads,
        PyObject* missing_error) except +translate_exception
    bool transfer_same_structure "optree::transfer::same_structure"(
        const TreeSpec& a, const TreeSpec& b) except +translate_exception
    bool transfer_registrations_current "optree::transfer::registrations_current"(
        const TreeSpec& spec) except +translate_exception
    Ref transfer_encode_leaves "optree::transfer::encode_leaves"(
        PyObject* leaves, PyObject* dumps) except +translate_exception
    Ref transfer_decode_leaves "optree::transfer::decode_leaves"(
        PyObject* data, PyObject* objects, PyObject* loads) except +translate_exception
    Ref transfer_match_leaves "optree::transfer::match_leaves"(
        const TreeSpec& spec, PyObject* tree, bool none_is_leaf, const string& ns,
        bool insertion_ordered, PyObject* dumps) except +translate_exception


cdef extern from "optree/gc.h" namespace "optree":
    void install_treespec_gc(PyTypeObject* type, Py_ssize_t offset) except +translate_exception
    void install_iterator_gc(PyTypeObject* type, Py_ssize_t offset) except +translate_exception
