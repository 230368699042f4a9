// Pickle state of a treespec, in optree 0.20.0's layout so that pickles load in either package:
//
//   (node_states, none_is_leaf, namespace)
//
// with one 8-tuple per node, in treespec (post-)order:
//
//   (kind, arity, node_data, node_entries, custom_type, num_leaves, num_nodes, original_keys)
//
// `kind` is the PyTreeKind value; `node_data` holds the node's own objects (a fresh list of keys
// for the dict kinds, (default_factory, keys) for a defaultdict, the class of a namedtuple or
// PyStructSequence, a deque's maxlen, a custom node's metadata, else None); `node_entries` and
// `custom_type` are set for custom nodes only; `original_keys` is, for dict and defaultdict
// nodes, a fresh dict whose keys are in insertion order. A 7-tuple (no original keys) loads too.
//
// Saving: nodes whose states are equal and hold no container of ours (every kind but the dict
// kinds) share one state tuple, which the pickler writes once and then refers to by its memo
// index: a list of 1,000 leaves pickles as one leaf state and 999 two-byte references. Loading
// parses a state tuple seen before only once, for the same reason.
//
// Loading validates everything, since the state may come from anywhere, and is iterative (no C
// recursion proportional to the depth).
#include <array>
#include <optional>

#include "internal.h"
#include "optree/introspection.h"
#include "optree/text.h"
#include "optree/treespec.h"

namespace optree {

namespace {

[[noreturn]] void malformed(const std::string& why) {
  raise(PyExc_RuntimeError, "Malformed pickled PyTreeSpec: " + why + ".");
}

// ---------------------------------------------------------------------------------- saving

Ref new_int(Py_ssize_t value) { return check_ref(PyLong_FromSsize_t(value)); }

// A new dict with `keys` (a list) as its keys, in order, and None values.
Ref dict_from_keys(PyObject* keys) {
  Ref dict = check_ref(PyDict_New());
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys); ++i) {
    check_int(PyDict_SetItem(dict.get(), PyList_GET_ITEM(keys, i), Py_None));
  }
  return dict;
}

Ref list_copy(PyObject* list) { return check_ref(PyList_GetSlice(list, 0, PY_SSIZE_T_MAX)); }

Ref node_state(const Node& node) {
  Ref data;
  Ref original_keys;
  switch (node.kind) {
    case NodeKind::Dict:
    case NodeKind::OrderedDict:
    case NodeKind::FrozenDict:
      // Copies: the state must not alias the treespec's own containers.
      data = list_copy(node.node_data.get());
      break;
    case NodeKind::DefaultDict: {
      Ref keys = list_copy(PyTuple_GET_ITEM(node.node_data.get(), 1));
      data = check_ref(PyTuple_Pack(2, PyTuple_GET_ITEM(node.node_data.get(), 0), keys.get()));
      break;
    }
    default:
      data = Ref::borrow(node.node_data ? node.node_data.get() : Py_None);
  }
  if (sorts_dict_keys(node.kind)) {
    original_keys =
        dict_from_keys(node.original_keys ? node.original_keys.get() : dict_keys_of(node));
  }
  Ref state = check_ref(PyTuple_New(8));
  PyObject* tuple = state.get();
  PyTuple_SET_ITEM(tuple, 0, new_int(static_cast<Py_ssize_t>(node.kind)).release());
  PyTuple_SET_ITEM(tuple, 1, new_int(node.arity).release());
  PyTuple_SET_ITEM(tuple, 2, data.release());
  PyTuple_SET_ITEM(tuple, 3, Py_NewRef(node.node_entries ? node.node_entries.get() : Py_None));
  PyTuple_SET_ITEM(tuple, 4, Py_NewRef(node.custom ? node.custom->type : Py_None));
  PyTuple_SET_ITEM(tuple, 5, new_int(node.num_leaves).release());
  PyTuple_SET_ITEM(tuple, 6, new_int(node.num_nodes).release());
  PyTuple_SET_ITEM(tuple, 7, original_keys ? original_keys.release() : Py_NewRef(Py_None));
  return state;
}

// Whether two nodes have equal states that may be one shared tuple.
bool shareable_states(const Node& a, const Node& b) {
  return a.kind == b.kind && a.arity == b.arity && a.num_leaves == b.num_leaves &&
         a.num_nodes == b.num_nodes && a.node_data.get() == b.node_data.get() &&
         a.node_entries.get() == b.node_entries.get() && a.custom == b.custom;
}

size_t mix(size_t hash, size_t value) {
  return (hash ^ value) * 0x9E3779B97F4A7C15ULL + (hash >> 29);  // cheap, well spread
}

size_t share_hash(const Node& node) {
  size_t hash = static_cast<size_t>(node.kind);
  hash = mix(hash, static_cast<size_t>(node.arity));
  hash = mix(hash, static_cast<size_t>(node.num_leaves));
  hash = mix(hash, reinterpret_cast<uintptr_t>(node.node_data.get()) >> 4);
  hash = mix(hash, reinterpret_cast<uintptr_t>(node.custom.get()) >> 4);
  return hash ^ (hash >> 32);
}

// Direct-mapped cache size for shared states (saving) and seen states (loading).
constexpr size_t kShareSlots = 256;

}  // namespace

Ref TreeSpec::pickle_state() const {
  root();  // raises if uninitialized

  auto count = static_cast<Py_ssize_t>(nodes_.size());
  Ref node_states = check_ref(PyTuple_New(count));
  std::array<uint32_t, kShareSlots> shared{};  // node index + 1 of a shareable state; 0: none
  for (Py_ssize_t i = 0; i < count; ++i) {
    const Node& node = nodes_[static_cast<size_t>(i)];
    PyObject* state = nullptr;
    uint32_t* slot = nullptr;
    if (!is_dict_kind(node.kind) && node.kind != NodeKind::FrozenDict &&
        i < static_cast<Py_ssize_t>(UINT32_MAX)) {
      slot = &shared[share_hash(node) % kShareSlots];
      if (*slot != 0 && shareable_states(nodes_[*slot - 1], node)) {
        state = Py_NewRef(PyTuple_GET_ITEM(node_states.get(), *slot - 1));
      }
    }
    if (state == nullptr) {
      state = node_state(node).release();
      if (slot != nullptr) *slot = static_cast<uint32_t>(i + 1);
    }
    PyTuple_SET_ITEM(node_states.get(), i, state);
  }
  Ref ns_text = unicode(ns_);
  return check_ref(
      PyTuple_Pack(3, node_states.get(), none_is_leaf_ ? Py_True : Py_False, ns_text.get()));
}

// --------------------------------------------------------------------------------- loading

namespace {

// A tuple holding the items of `obj`, a tuple or list (as optree accepts a sequence here).
Ref as_tuple(PyObject* obj, const char* what) {
  if (PyTuple_Check(obj)) return Ref::borrow(obj);
  if (PyList_Check(obj)) return check_ref(PyList_AsTuple(obj));  // a snapshot
  malformed(std::string(what) + " is not a tuple");
}

Py_ssize_t as_size(PyObject* obj, const char* what) {
  if (!PyLong_Check(obj)) malformed(std::string(what) + " is not an int");
  Py_ssize_t value = PyLong_AsSsize_t(obj);
  if (value == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    malformed(std::string(what) + " is out of range");
  }
  return value;
}

// A new list of the keys in `obj`, a list or tuple, checked to be hashable and distinct; `index`
// receives a dict mapping each key to itself.
Ref load_keys(PyObject* obj, Py_ssize_t arity, Ref& index) {
  Ref keys;
  if (PyList_Check(obj)) {
    keys = list_copy(obj);  // not the caller's list, which they may change afterwards
  } else if (PyTuple_Check(obj)) {
    keys = check_ref(PySequence_List(obj));
  } else {
    malformed("the keys are not a list");
  }
  if (PyList_GET_SIZE(keys.get()) != arity)
    malformed("the number of keys does not match the arity");
  index = check_ref(PyDict_New());
  for (Py_ssize_t i = 0; i < arity; ++i) {
    PyObject* key = PyList_GET_ITEM(keys.get(), i);
    if (PyDict_SetItem(index.get(), key, key) < 0) {
      if (!PyErr_ExceptionMatches(PyExc_TypeError)) throw_python_error();
      PyErr_Clear();
      malformed("the keys are not hashable");
    }
  }
  if (PyDict_GET_SIZE(index.get()) != arity) malformed("the keys are not distinct");
  return keys;
}

// The insertion-order keys of a dict node from `obj` (a dict, or a list or tuple of keys), as
// the very key objects of `keys`; null when that order is the order of `keys`.
Ref load_original_keys(PyObject* obj, PyObject* keys, PyObject* index) {
  Ref original;
  if (PyDict_Check(obj)) {
    original = check_ref(PyDict_Keys(obj));
  } else if (PyList_Check(obj) || PyTuple_Check(obj)) {
    Ref items = as_tuple(obj, "the original keys");
    Ref dict = check_ref(PyDict_New());  // drops repeated keys, as dict.fromkeys would
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(items.get()); ++i) {
      if (PyDict_SetItem(dict.get(), PyTuple_GET_ITEM(items.get(), i), Py_None) < 0) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError)) throw_python_error();
        PyErr_Clear();
        malformed("the original keys are not hashable");
      }
    }
    original = check_ref(PyDict_Keys(dict.get()));
  } else {
    malformed("the original keys are not a dict");
  }
  Py_ssize_t n = PyList_GET_SIZE(keys);
  if (PyList_GET_SIZE(original.get()) != n) {
    malformed("the number of original keys does not match the arity");
  }
  // Distinct original keys, as many as the distinct keys, each one of them: the same set.
  bool same_order = true;
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* found = PyDict_GetItemWithError(index, PyList_GET_ITEM(original.get(), i));
    if (found == nullptr) {
      if (PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError)) throw_python_error();
        PyErr_Clear();
      }
      malformed("the keys do not match the original keys");
    }
    PyList_SetItem(original.get(), i, Py_NewRef(found));
    same_order = same_order && found == PyList_GET_ITEM(keys, i);
  }
  return same_order ? Ref() : original;
}

bool is_builtin_node_type(PyObject* type, const BuiltinTypes& builtins, bool none_is_leaf) {
  auto* t = reinterpret_cast<PyTypeObject*>(type);
  return builtins.is_builtin_container(t) || (!none_is_leaf && t == Py_TYPE(Py_None));
}

// The per-kind checks of a node state's node data, each filling the node's data.

void load_no_data(NodeKind kind, PyObject* data, Node& node, bool none_is_leaf) {
  if (kind == NodeKind::Tuple || kind == NodeKind::List) {
    if (data != Py_None) malformed("a tuple or list node must not have node data");
    return;
  }
  if (data != Py_None) malformed("a leaf or none node must not have node data");
  if (node.arity != 0) malformed("a leaf or none node must have arity 0");
  if (kind == NodeKind::None && none_is_leaf) {
    malformed("a none node cannot appear when none_is_leaf is set");
  }
}

void load_defaultdict(PyObject* data, Node& node, Ref& index) {
  Ref metadata = as_tuple(data, "the defaultdict metadata");
  if (PyTuple_GET_SIZE(metadata.get()) != 2) malformed("the defaultdict metadata is not a 2-tuple");
  PyObject* factory = PyTuple_GET_ITEM(metadata.get(), 0);
  if (factory != Py_None && !PyCallable_Check(factory)) {
    malformed("the `default_factory` is not callable");
  }
  Ref keys = load_keys(PyTuple_GET_ITEM(metadata.get(), 1), node.arity, index);
  node.node_data = check_ref(PyTuple_Pack(2, factory, keys.get()));
}

// None (unbounded) or an int that collections.deque accepts, at least the arity.
void load_deque(PyObject* data, Node& node) {
  if (data != Py_None && deque_maxlen_problem(data, node.arity, false) != MaxlenProblem::Fits) {
    malformed("the deque maxlen is invalid");
  }
  node.node_data = Ref::borrow(data);
}

void load_tuple_class(PyObject* data, Node& node, const BuiltinTypes& types) {
  bool named = node.kind == NodeKind::NamedTuple;
  if (named ? !is_namedtuple_class(data, types) : !is_structseq_class(data, types)) {
    malformed(named ? "the node data is not a namedtuple type"
                    : "the node data is not a PyStructSequence type");
  }
  Ref fields = named ? namedtuple_fields(data) : structseq_fields(data);
  if (!PyTuple_Check(fields.get()) || PyTuple_GET_SIZE(fields.get()) != node.arity) {
    malformed("the number of fields does not match the arity");
  }
  node.node_data = Ref::borrow(data);
}

void load_custom_entries(PyObject* entries, Node& node) {
  if (entries == Py_None) return;
  if (!PyTuple_Check(entries)) malformed("the node entries are not a tuple");
  if (PyTuple_GET_SIZE(entries) != node.arity) {
    malformed("the number of node entries does not match the arity");
  }
  node.node_entries = Ref::borrow(entries);
}

class StateLoader {
 public:
  explicit StateLoader(TreeSpec& spec, PyObject* ns) : spec_(spec), ns_(ns) {}

  // Parses one node state (not checked against its children).
  Node parse(PyObject* state_obj) {
    Ref state = as_tuple(state_obj, "a node state");
    Py_ssize_t size = PyTuple_GET_SIZE(state.get());
    if (size != 7 && size != 8) malformed("a node state is not a 7- or 8-tuple");
    auto item = [&state](Py_ssize_t i) { return PyTuple_GET_ITEM(state.get(), i); };
    Node node;
    PyObject* original_keys = size == 8 ? item(7) : Py_None;
    parse_header(item(0), item(1), item(5), item(6), size == 8, original_keys, node);
    PyObject* data = item(2);
    PyObject* entries = item(3);
    PyObject* custom_type = item(4);
    if (node.kind != NodeKind::Custom && (entries != Py_None || custom_type != Py_None)) {
      malformed("a non-custom node must not have node entries or a custom type");
    }
    Ref index;  // of the keys of a dict kind
    switch (node.kind) {
      case NodeKind::Leaf:
      case NodeKind::None:
      case NodeKind::Tuple:
      case NodeKind::List:
        load_no_data(node.kind, data, node, spec_.none_is_leaf());
        break;
      case NodeKind::Dict:
      case NodeKind::OrderedDict:
        node.node_data = load_keys(data, node.arity, index);
        break;
      case NodeKind::DefaultDict:
        load_defaultdict(data, node, index);
        break;
      case NodeKind::Deque:
        load_deque(data, node);
        break;
      case NodeKind::NamedTuple:
      case NodeKind::StructSequence:
        load_tuple_class(data, node, builtins_.get());
        break;
      case NodeKind::Custom:
        node.custom = registration(custom_type);
        node.node_data = Ref::borrow(data);
        load_custom_entries(entries, node);
        break;
      default:
        malformed("the node kind is out of range");
    }
    if (sorts_dict_keys(node.kind) && original_keys != Py_None) {
      node.original_keys = load_original_keys(original_keys, dict_keys_of(node), index.get());
    }
    return node;
  }

 private:
  // The kind, arity and sizes of a node state, and whether its original keys may be there.
  void parse_header(PyObject* kind_obj, PyObject* arity, PyObject* num_leaves, PyObject* num_nodes,
                    bool has_original_keys, PyObject* original_keys, Node& node) {
    Py_ssize_t kind = as_size(kind_obj, "the node kind");
    if (kind < 0 || kind >= static_cast<Py_ssize_t>(NodeKind::NumKinds)) {
      malformed("the node kind is out of range");
    }
    node.kind = static_cast<NodeKind>(kind);
    if (node.kind == NodeKind::FrozenDict) {
      raise(PyExc_ValueError,
            "Cannot restore a PyTreeSpec containing a `frozendict` node: this build of optree "
            "was compiled without `frozendict` support (requires Python 3.15+).");
    }
    node.arity = as_size(arity, "the node arity");
    if (node.arity < 0) malformed("the node arity is negative");
    bool keeps_original_keys = sorts_dict_keys(node.kind);
    if (has_original_keys && keeps_original_keys && original_keys == Py_None) {
      malformed("a dict node is missing its original keys");
    }
    if (!keeps_original_keys && original_keys != Py_None) {
      malformed("a non-dict node must not have original keys");
    }
    node.num_leaves = as_size(num_leaves, "the number of leaves");
    node.num_nodes = as_size(num_nodes, "the number of nodes");
    if (node.num_leaves < 0 || node.num_nodes < 1) {
      malformed("a node has a negative or invalid size");
    }
  }

  RegistrationPtr registration(PyObject* custom_type) {
    if (custom_type != Py_None && PyType_Check(custom_type)) {
      if (is_builtin_node_type(custom_type, builtins_.get(), spec_.none_is_leaf())) {
        malformed("the custom type is a built-in type");
      }
      if (!view_) view_.emplace();
      const RegistrationPtr* found = view_->snapshot()
                                         .table_for(spec_.ns())
                                         .find(reinterpret_cast<PyTypeObject*>(custom_type));
      if (found != nullptr) return *found;
    }
    raise(PyExc_RuntimeError, "Unknown custom type in pickled PyTreeSpec: " + repr_of(custom_type) +
                                  (spec_.ns().empty() ? std::string(" in the global namespace.")
                                                      : " in namespace " + repr_of(ns_) + "."));
  }

  TreeSpec& spec_;
  PyObject* ns_;
  LazyBuiltins builtins_;
  std::optional<RegistryView> view_;  // pinned at the first custom node
};

size_t pointer_slot(PyObject* obj) {
  auto bits = reinterpret_cast<uintptr_t>(obj) >> 4;
  return (bits ^ (bits >> 8)) % kShareSlots;
}

}  // namespace

TreeSpec TreeSpec::from_pickle_state(PyObject* state) {
  if (!PyTuple_Check(state) && !PyList_Check(state)) malformed("the state is not a 3-tuple");
  Ref state_items = as_tuple(state, "the state");
  if (PyTuple_GET_SIZE(state_items.get()) != 3) malformed("the state is not a 3-tuple");
  PyObject* none_is_leaf = PyTuple_GET_ITEM(state_items.get(), 1);
  PyObject* ns = PyTuple_GET_ITEM(state_items.get(), 2);
  if (!PyBool_Check(none_is_leaf)) malformed("none_is_leaf is not a bool");
  if (!PyUnicode_Check(ns)) malformed("the namespace is not a str");
  Ref node_states = as_tuple(PyTuple_GET_ITEM(state_items.get(), 0), "the node states");

  TreeSpec spec;
  spec.none_is_leaf_ = none_is_leaf == Py_True;
  Py_ssize_t ns_size = 0;
  const char* ns_utf8 = PyUnicode_AsUTF8AndSize(ns, &ns_size);
  if (ns_utf8 == nullptr) throw_python_error();
  spec.ns_.assign(ns_utf8, static_cast<size_t>(ns_size));

  StateLoader loader(spec, ns);
  auto count = static_cast<size_t>(PyTuple_GET_SIZE(node_states.get()));
  spec.nodes_.reserve(count);
  // Node states already parsed (a tuple shared by equal nodes, as we save them): its pointer
  // and the index of the node made from it.
  std::array<std::pair<PyObject*, size_t>, kShareSlots> seen{};
  std::vector<size_t> roots;  // of the subtrees not yet claimed by a parent
  for (size_t i = 0; i < count; ++i) {
    PyObject* item = PyTuple_GET_ITEM(node_states.get(), static_cast<Py_ssize_t>(i));
    auto& slot = seen[pointer_slot(item)];
    if (slot.first == item) {
      Node copy = spec.nodes_[slot.second];
      spec.nodes_.push_back(std::move(copy));
    } else {
      spec.nodes_.push_back(loader.parse(item));
      if (PyTuple_CheckExact(item)) slot = {item, i};  // immutable, held by node_states
    }
    const Node& node = spec.nodes_.back();
    if (static_cast<size_t>(node.arity) > roots.size()) {
      malformed("a node has more children than available subtrees");
    }
    SubtreeSize size = adopt_children(spec.nodes_, roots, i, node.kind, node.arity);
    if (node.num_nodes != size.nodes || node.num_leaves != size.leaves) {
      malformed("a node's size is inconsistent with its children");
    }
  }
  if (roots.size() != 1) malformed("the traversal does not yield a single tree");
  pack_shape(spec.nodes_, spec.packed_shape_);
  return spec;
}

}  // namespace optree
