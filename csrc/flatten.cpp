// Flatten: node classification, per-kind child extraction, the recursive flatten and the lazy
// leaf iterator. A node kind's flatten logic lives in expand_node(); unflatten.cpp holds the
// matching rebuild logic.
#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "internal.h"
#include "optree/introspection.h"
#include "optree/leaf_iterator.h"
#include "optree/text.h"
#include "optree/treespec.h"

namespace optree {

// ------------------------------------------------------------------------- classification

namespace {

NodeInfo classify_tuple_subclass(PyTypeObject* type, const BuiltinTypes& builtins) {
  TupleClassInfo info = tuple_class_info(type, builtins);
  if (info.namedtuple) return {NodeKind::NamedTuple};
  if (info.structseq) return {NodeKind::StructSequence};
  return {NodeKind::Leaf};
}

// Inlined into the flatten loop: most nodes are decided by the first few pointer compares.
[[gnu::always_inline]] inline NodeInfo classify(PyObject* obj, RegistryView& view,
                                                const FlattenOptions& options) {
  if (options.leaf_predicate != nullptr) [[unlikely]] {
    Ref result = check_ref(PyObject_CallOneArg(options.leaf_predicate, obj));
    view.refresh();
    if (check_int(PyObject_IsTrue(result.get()))) return {NodeKind::Leaf};
  }
  const BuiltinTypes& builtins = view.shard().builtins();
  if (obj == Py_None) return {options.none_is_leaf ? NodeKind::Leaf : NodeKind::None};
  PyTypeObject* type = Py_TYPE(obj);
  if (view.is_known_leaf_type(type)) return {NodeKind::Leaf};
  if (type == &PyTuple_Type) return {NodeKind::Tuple};
  if (type == &PyList_Type) return {NodeKind::List};
  if (type == &PyDict_Type) return {NodeKind::Dict};
  if (type == builtins.ordered_dict) return {NodeKind::OrderedDict};
  if (type == builtins.default_dict) return {NodeKind::DefaultDict};
  if (type == builtins.deque) return {NodeKind::Deque};
  if (const RegistrationPtr* registration = view.table_for(options.ns).find(type)) {
    return {NodeKind::Custom, registration};
  }
  if (PyTuple_Check(obj)) [[unlikely]]
    return classify_tuple_subclass(type, builtins);
  view.remember_leaf_type(type);
  return {NodeKind::Leaf};
}

}  // namespace

Ref sorted_keys(PyObject* keys_in_order) {
  Ref keys = check_ref(PyList_GetSlice(keys_in_order, 0, PyList_GET_SIZE(keys_in_order)));
  if (PyList_Sort(keys.get()) == 0) return keys;
  keys = Ref();  // a failed sort may leave it half sorted
  if (!PyErr_ExceptionMatches(PyExc_TypeError)) throw_python_error();
  PyErr_Clear();
  Py_ssize_t n = PyList_GET_SIZE(keys_in_order);
  // The (type name, key) pairs are gathered before they go into a list: the attribute lookups
  // may run Python code (a metaclass property), which must not find a list with empty slots.
  std::vector<Ref> pairs;
  pairs.reserve(static_cast<size_t>(n));
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* key = PyList_GET_ITEM(keys_in_order, i);
    PyObject* cls = reinterpret_cast<PyObject*>(Py_TYPE(key));
    Ref module = check_ref(PyObject_GetAttrString(cls, "__module__"));
    Ref qualname = check_ref(PyObject_GetAttrString(cls, "__qualname__"));
    Ref type_name = check_ref(PyUnicode_FromFormat("%S.%S", module.get(), qualname.get()));
    pairs.push_back(check_ref(PyTuple_Pack(2, type_name.get(), key)));
  }
  Ref decorated = check_ref(PyList_New(n));
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyList_SET_ITEM(decorated.get(), i, pairs[static_cast<size_t>(i)].release());
  }
  if (PyList_Sort(decorated.get()) == 0) {
    Ref sorted = check_ref(PyList_New(n));
    for (Py_ssize_t i = 0; i < n; ++i) {
      PyObject* key = PyTuple_GET_ITEM(PyList_GET_ITEM(decorated.get(), i), 1);
      PyList_SET_ITEM(sorted.get(), i, Py_NewRef(key));
    }
    return sorted;
  }
  if (!PyErr_ExceptionMatches(PyExc_TypeError)) throw_python_error();
  PyErr_Clear();
  return check_ref(PyList_GetSlice(keys_in_order, 0, n));
}

namespace {

bool same_order(PyObject* a, PyObject* b) {
  Py_ssize_t n = PyList_GET_SIZE(a);
  for (Py_ssize_t i = 0; i < n; ++i) {
    if (PyList_GET_ITEM(a, i) != PyList_GET_ITEM(b, i)) return false;
  }
  return true;
}

}  // namespace

namespace {

// The items of the children a custom flatten function returned, as iteration gives them.
void collect_iterable(PyObject* raw_children, std::vector<Ref>& children) {
  Ref iterator = Ref::steal(PyObject_GetIter(raw_children));
  if (!iterator) {
    if (!PyErr_ExceptionMatches(PyExc_TypeError)) throw_python_error();
    PyErr_Clear();
    raise(PyExc_TypeError, std::string("Object of type '") + Py_TYPE(raw_children)->tp_name +
                               "' is not an instance of 'iterable'");
  }
  while (PyObject* item = PyIter_Next(iterator.get())) children.push_back(Ref::steal(item));
  if (PyErr_Occurred()) throw_python_error();
}

// Whether sorting `keys` would leave them as they are, found without running Python code: the
// keys are all exact str (or all exact int) and increasing. False when that is not known.
bool known_sorted(PyObject* keys) {
  Py_ssize_t n = PyList_GET_SIZE(keys);
  if (n < 2) return true;  // sorting compares nothing
  PyObject** items = reinterpret_cast<PyListObject*>(keys)->ob_item;
  if (PyUnicode_CheckExact(items[0])) {
    for (Py_ssize_t i = 1; i < n; ++i) {
      if (!PyUnicode_CheckExact(items[i]) || PyUnicode_Compare(items[i - 1], items[i]) >= 0) {
        return false;
      }
    }
    return true;
  }
  if (PyLong_CheckExact(items[0])) {
    for (Py_ssize_t i = 1; i < n; ++i) {
      if (!PyLong_CheckExact(items[i])) return false;
      int less = PyObject_RichCompareBool(items[i - 1], items[i], Py_LT);
      if (less < 0) PyErr_Clear();  // cannot happen for ints; the sort decides then
      if (less != 1) return false;
    }
    return true;
  }
  return false;
}

}  // namespace

// The keys of a dict-kind node in flatten order (`keys_in_order` sorted, unless insertion
// order applies); sets the node's data and, when the orders differ, its original keys.
Ref dict_node_keys(PyObject* obj, NodeKind kind, const Ref& keys_in_order, RegistryView& view,
                   const FlattenOptions& options, Node& node) {
  Ref keys;
  if (!sorts_dict_keys(kind)) {
    keys = keys_in_order;
  } else {
    bool insertion_ordered = options.dict_insertion_ordered.has_value()
                                 ? *options.dict_insertion_ordered
                                 : view.snapshot().dicts_insertion_ordered(options.ns);
    // Keys already in order (the common case of str keys) keep their list.
    keys = insertion_ordered || known_sorted(keys_in_order.get())
               ? keys_in_order
               : sorted_keys(keys_in_order.get());
    if (!same_order(keys.get(), keys_in_order.get())) node.original_keys = keys_in_order;
  }
  if (kind == NodeKind::DefaultDict) {
    Ref factory = check_ref(PyObject_GetAttrString(obj, "default_factory"));
    node.node_data = check_ref(PyTuple_Pack(2, factory.get(), keys.get()));
  } else {
    node.node_data = keys;
  }
  return keys;
}

namespace {

// What the flatten_func of a field-layout registration returns (see FieldLayout), without
// calling it: the same attribute reads in the same order, the same metadata tuple.
void read_fields(PyObject* obj, const Registration& registration, Node& node,
                 std::vector<Ref>& children) {
  PyObject* child_names = FieldLayout::part(registration, FieldLayout::ChildNames);
  Py_ssize_t num_children = PyTuple_GET_SIZE(child_names);
  children.reserve(static_cast<size_t>(num_children));
  for (Py_ssize_t i = 0; i < num_children; ++i) {
    children.push_back(check_ref(PyObject_GetAttr(obj, PyTuple_GET_ITEM(child_names, i))));
  }
  PyObject* names = FieldLayout::part(registration, FieldLayout::MetadataNames);
  PyObject* keywords = FieldLayout::part(registration, FieldLayout::MetadataKeywords);
  Py_ssize_t num_metadata = PyTuple_GET_SIZE(names);
  Ref metadata = check_ref(PyTuple_New(num_metadata));
  for (Py_ssize_t i = 0; i < num_metadata; ++i) {
    Ref value = check_ref(PyObject_GetAttr(obj, PyTuple_GET_ITEM(names, i)));
    PyObject* pair = check(PyTuple_New(2));
    PyTuple_SET_ITEM(pair, 0, Py_NewRef(PyTuple_GET_ITEM(keywords, i)));
    PyTuple_SET_ITEM(pair, 1, value.release());
    PyTuple_SET_ITEM(metadata.get(), i, pair);
  }
  node.node_data = std::move(metadata);
  node.node_entries = Ref::borrow(child_names);
}

}  // namespace

namespace {

// expand_node() for one kind (or family of kinds) each.

// Tuple, NamedTuple and StructSequence: a tuple holds its items.
void expand_tuple(PyObject* obj, NodeKind kind, Node& node, std::vector<Ref>& children) {
  Py_ssize_t n =
      kind == NodeKind::StructSequence ? structseq_length(Py_TYPE(obj)) : PyTuple_GET_SIZE(obj);
  append_items(children, obj, n);
  if (kind != NodeKind::Tuple)
    node.node_data = Ref::borrow(reinterpret_cast<PyObject*>(Py_TYPE(obj)));
}

// List and Deque: the items of a copy, a consistent view even if obj changes meanwhile.
void expand_sequence(PyObject* obj, NodeKind kind, Node& node, std::vector<Ref>& children) {
  Ref copy = check_ref(PySequence_Tuple(obj));
  append_items(children, copy.get(), PyTuple_GET_SIZE(copy.get()));
  if (kind == NodeKind::Deque) node.node_data = check_ref(PyObject_GetAttrString(obj, "maxlen"));
}

// The dict kinds: the values of a copy, consistent under concurrent writers, in key order.
void expand_dict_copy(PyObject* obj, NodeKind kind, RegistryView& view,
                      const FlattenOptions& options, Node& node, std::vector<Ref>& children) {
  Ref snapshot_dict = check_ref(PyDict_Copy(obj));
  Ref keys_in_order = check_ref(PyDict_Keys(snapshot_dict.get()));
  Ref keys = dict_node_keys(obj, kind, keys_in_order, view, options, node);
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys.get()); ++i) {
    PyObject* value = PyDict_GetItemWithError(snapshot_dict.get(), PyList_GET_ITEM(keys.get(), i));
    if (value == nullptr) {
      if (!PyErr_Occurred())
        PyErr_SetString(PyExc_RuntimeError, "dictionary changed during flatten");
      throw_python_error();
    }
    children.push_back(Ref::borrow(value));
  }
}

// What a custom flatten function returned, (children, metadata[, entries]), into the node.
void read_flatten_result(PyObject* result, const Registration& registration, Node& node,
                         std::vector<Ref>& children) {
  Py_ssize_t size = PyTuple_GET_SIZE(result);
  if (size != 2 && size != 3) {
    raise(PyExc_RuntimeError,
          "PyTree custom flatten function for type " + repr_of(registration.type) +
              " should return a 2- or 3-tuple, got " + std::to_string(size) + ".");
  }
  PyObject* raw_children = PyTuple_GET_ITEM(result, 0);
  if (PyTuple_CheckExact(raw_children) || PyList_CheckExact(raw_children)) {
    // What iterating them would give, without the iterator protocol.
    Ref items = PyTuple_CheckExact(raw_children) ? Ref::borrow(raw_children)
                                                 : check_ref(PyList_AsTuple(raw_children));
    append_items(children, items.get(), PyTuple_GET_SIZE(items.get()));
  } else {
    collect_iterable(raw_children, children);
  }
  node.node_data = Ref::borrow(PyTuple_GET_ITEM(result, 1));

  if (size == 3 && PyTuple_GET_ITEM(result, 2) != Py_None) {
    node.node_entries = check_ref(PySequence_Tuple(PyTuple_GET_ITEM(result, 2)));
    Py_ssize_t num_entries = PyTuple_GET_SIZE(node.node_entries.get());
    if (num_entries != static_cast<Py_ssize_t>(children.size())) {
      raise(PyExc_RuntimeError,
            "PyTree custom flatten function for type " + repr_of(registration.type) +
                " returned inconsistent number of children (" + std::to_string(children.size()) +
                ") and number of entries (" + std::to_string(num_entries) + ").");
    }
  }
}

void expand_custom(PyObject* obj, const NodeInfo& info, RegistryView& view, Node& node,
                   std::vector<Ref>& children) {
  // Copied out first: the flatten function may change the registry and unpin the snapshot.
  node.custom = *info.custom;
  const Registration& registration = *node.custom;
  if (registration.field_layout != nullptr) {
    read_fields(obj, registration, node, children);
    view.refresh();  // attribute lookups may run Python code
    return;
  }
  Ref result = check_ref(PyObject_CallOneArg(registration.flatten_func, obj));
  view.refresh();
  if (!PyTuple_Check(result.get())) result = check_ref(PySequence_Tuple(result.get()));
  read_flatten_result(result.get(), registration, node, children);
}

}  // namespace

// Fills `node` (except counts) and the children of a non-leaf object, in flatten order.
void expand_node(PyObject* obj, const NodeInfo& info, RegistryView& view,
                 const FlattenOptions& options, Node& node, std::vector<Ref>& children,
                 bool& uses_namespace) {
  node.kind = info.kind;
  switch (info.kind) {
    case NodeKind::None:
    case NodeKind::Leaf:
      break;
    case NodeKind::Tuple:
    case NodeKind::NamedTuple:
    case NodeKind::StructSequence:
      expand_tuple(obj, info.kind, node, children);
      break;
    case NodeKind::List:
    case NodeKind::Deque:
      expand_sequence(obj, info.kind, node, children);
      break;
    case NodeKind::Dict:
    case NodeKind::OrderedDict:
    case NodeKind::DefaultDict:
      expand_dict_copy(obj, info.kind, view, options, node, children);
      break;
    case NodeKind::Custom:
      expand_custom(obj, info, view, node, children);
      // optree records the namespace in the treespec once any custom node is met, even one
      // registered globally (the namespace may be the empty global one: that is a no-op).
      uses_namespace = true;
      break;
    case NodeKind::FrozenDict:
    case NodeKind::NumKinds:
      raise(PyExc_SystemError, "unsupported node kind");
  }
  node.arity = static_cast<Py_ssize_t>(children.size());
}

// ------------------------------------------------------------------------------- flatten

namespace {

// Owned references with an append that compiles to a compare and a store.
class OwnedObjects {
 public:
  OwnedObjects() = default;
  OwnedObjects(const OwnedObjects&) = delete;
  OwnedObjects& operator=(const OwnedObjects&) = delete;
  ~OwnedObjects() {
    for (size_t i = 0; i < size_; ++i) Py_DECREF(items_[i]);
    std::free(items_);
  }

  size_t size() const noexcept { return size_; }
  void reserve(size_t wanted) {
    if (wanted > capacity_) grow(std::max(wanted, 2 * capacity_));
  }
  // Takes the reference over (also when it throws).
  [[gnu::always_inline]] void push(PyObject* obj) {
    if (size_ == capacity_) [[unlikely]]
      grow_for_one(obj);
    items_[size_++] = obj;
  }
  // A new list taking every reference over; leaves this empty.
  Ref to_list() {
    Ref list = check_ref(PyList_New(static_cast<Py_ssize_t>(size_)));
    if (size_ > 0) {
      std::memcpy(reinterpret_cast<PyListObject*>(list.get())->ob_item, items_,
                  size_ * sizeof(PyObject*));
    }
    size_ = 0;
    return list;
  }

 private:
  void grow(size_t capacity) {
    void* items = std::realloc(items_, capacity * sizeof(PyObject*));
    if (items == nullptr) throw std::bad_alloc();
    items_ = static_cast<PyObject**>(items);
    capacity_ = capacity;
  }
  [[gnu::noinline]] void grow_for_one(PyObject* obj) {
    try {
      grow(std::max<size_t>(16, 2 * capacity_));
    } catch (...) {
      Py_DECREF(obj);
      throw;
    }
  }

  PyObject** items_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

// One walk serves flatten (nodes and leaves), tree_leaves (leaves only) and tree_structure
// (nodes only): what is not asked for is not built.
template <bool kBuildNodes, bool kCollectLeaves>
struct Flattener {
  Flattener(const FlattenOptions& options_, std::vector<Node>& nodes_,
            std::vector<uint64_t>& shape_)
      : options(options_), nodes(nodes_), shape(shape_) {}
  Flattener(const Flattener&) = delete;
  Flattener& operator=(const Flattener&) = delete;

  RegistryView view;
  const FlattenOptions& options;
  std::vector<Node>& nodes;
  std::vector<uint64_t>& shape;  // TreeSpec::packed_shape_, filled along with `nodes` if `pack`
  bool pack = false;
  OwnedObjects leaves;
  OwnedObjects paths;                  // only with_path
  std::vector<PyObject*> path_prefix;  // borrowed entries of the current path
  Py_ssize_t num_leaves = 0;
  // Leaf nodes not yet appended to `nodes`: runs of leaves are appended at once, before the
  // next container's nodes (post-order is kept) or when the walk ends.
  size_t pending_leaf_nodes = 0;
  bool with_path = false;
  bool uses_namespace = false;

  // Takes `leaf` over.
  [[gnu::always_inline]] void add_leaf(Ref& leaf) {
    ++num_leaves;
    if (with_path) [[unlikely]]
      add_path();
    if constexpr (kCollectLeaves) leaves.push(leaf.release());
    if constexpr (kBuildNodes) ++pending_leaf_nodes;
  }

  void flush_leaf_nodes() {
    if constexpr (kBuildNodes) {
      if (pending_leaf_nodes == 0) return;
      size_t first = nodes.size();
      nodes.resize(first + pending_leaf_nodes);
      if (pack) shape.resize(first + pending_leaf_nodes, TreeSpec::packed_word(NodeKind::Leaf, 0));
      pending_leaf_nodes = 0;
      for (size_t i = first; i < nodes.size(); ++i) {
        nodes[i].num_leaves = 1;
        nodes[i].num_nodes = 1;
      }
    }
  }

  [[gnu::noinline]] void add_path() {
    paths.push(tuple_of(path_prefix.data(), static_cast<Py_ssize_t>(path_prefix.size())).release());
  }

  [[noreturn, gnu::noinline]] static void list_index_out_of_range() {
    raise(PyExc_IndexError, "list index out of range");
  }

  [[noreturn, gnu::noinline]] static void too_deep() {
    raise(PyExc_RecursionError, "Maximum recursion depth exceeded during flattening the tree.");
  }

  // Visits `obj`, holding the reference the caller hands over (which keeps it alive whatever
  // Python code runs meanwhile): a leaf's reference moves into the leaves, a container's is
  // released after its subtree. Inlined into the container loops, so that leaves cost no call.
  [[gnu::always_inline]] void visit(Ref obj, Py_ssize_t depth) {
    if (depth > kMaxRecursionDepth) [[unlikely]]
      too_deep();
    NodeInfo info = classify(obj.get(), view, options);
    if (info.kind == NodeKind::Leaf) {
      add_leaf(obj);
      return;
    }
    flush_leaf_nodes();
    expand(obj.get(), info, depth);
  }

  static constexpr size_t kPackedShapeMinNodes = 16;

  void run(PyObject* tree) {
    // Programs flatten trees of one shape again and again: start with room for as many nodes
    // and leaves as this thread's previous flatten had, instead of growing (and moving every
    // node) a dozen times.
    // Capped, so that a small tree after a huge one does not reserve (and give back) as much.
    constexpr size_t kMostReserved = size_t{1} << 20;
    thread_local size_t previous_nodes = 0;
    thread_local size_t previous_leaves = 0;
    if constexpr (kBuildNodes) {
      nodes.reserve(std::min(previous_nodes, kMostReserved));
      // Trees of fewer nodes get no packed shape: a tiny treespec compares about as fast node
      // by node, and the vector would cost an allocation per flatten (a tenth of a 3-leaf
      // flatten). Filled along with the nodes when the previous tree of the thread was not
      // tiny, else afterwards if this one is not.
      pack = previous_nodes >= kPackedShapeMinNodes;
      if (pack) shape.reserve(std::min(previous_nodes, kMostReserved));
    }
    if constexpr (kCollectLeaves) leaves.reserve(std::min(previous_leaves, kMostReserved));
    visit(Ref::borrow(tree), 0);
    flush_leaf_nodes();
    if constexpr (kBuildNodes) {
      previous_nodes = nodes.size();
      if (!pack && nodes.size() >= kPackedShapeMinNodes) TreeSpec::pack_shape(nodes, shape);
      // A small tree after a big one: give the room back rather than keep it with the spec.
      if (nodes.capacity() > 2 * nodes.size() + 64) {
        nodes.shrink_to_fit();
        shape.shrink_to_fit();
      }
    }
    if constexpr (kCollectLeaves) previous_leaves = leaves.size();
  }

  // A sequence's child at `index`.
  [[gnu::always_inline]] void visit_child(Ref child, Py_ssize_t index, Py_ssize_t depth) {
    if (with_path) [[unlikely]] {
      visit_at(std::move(child), index, depth);
      return;
    }
    visit(std::move(child), depth);
  }

  [[gnu::noinline]] void visit_at(Ref child, Py_ssize_t index, Py_ssize_t depth) {
    Ref entry = check_ref(PyLong_FromSsize_t(index));
    path_prefix.push_back(entry.get());
    visit(std::move(child), depth);
    path_prefix.pop_back();
  }

  // As optree: the keys are taken (and sorted) first, and each value is read when it is
  // reached, so the Python code run meanwhile may change the dict: a replaced value is
  // visited, a removed key raises KeyError, keys added are not visited.
  [[gnu::noinline]] void expand_dict(PyObject* obj, const NodeInfo& info, Py_ssize_t depth,
                                     Node& node) {
    node.kind = info.kind;
    Ref keys_in_order = check_ref(PyDict_Keys(obj));
    Ref keys = dict_node_keys(obj, info.kind, keys_in_order, view, options, node);
    Py_ssize_t n = PyList_GET_SIZE(keys.get());
    reserve_for(n);
    for (Py_ssize_t i = 0; i < n; ++i) {
      PyObject* key = PyList_GET_ITEM(keys.get(), i);
#if PY_VERSION_HEX >= 0x030D0000
      PyObject* found = nullptr;
      if (check_int(PyDict_GetItemRef(obj, key, &found)) == 0) [[unlikely]]
        dict_key_gone(key);
      Ref value = Ref::steal(found);
#else
      PyObject* found = PyDict_GetItemWithError(obj, key);
      if (found == nullptr) [[unlikely]] {
        if (PyErr_Occurred()) throw_python_error();
        dict_key_gone(key);
      }
      Ref value = Ref::borrow(found);
#endif
      if (with_path) {
        path_prefix.push_back(key);
        visit(std::move(value), depth + 1);
        path_prefix.pop_back();
      } else {
        visit(std::move(value), depth + 1);
      }
    }
    node.arity = n;
  }

  // KeyError(key), as optree raises it from 3.13 on (before, its error is a pybind11 artifact).
  [[noreturn, gnu::noinline]] static void dict_key_gone(PyObject* key) {
    Ref args = check_ref(PyTuple_Pack(1, key));
    PyErr_SetObject(PyExc_KeyError, args.get());
    throw_python_error();
  }

  // Every other container: kept out of
  // expand(), so that the leaf path inlined there stays small.
  [[gnu::noinline]] void expand_other(PyObject* obj, const NodeInfo& info, Py_ssize_t depth,
                                      Node& node) {
    std::vector<Ref> children;
    expand_node(obj, info, view, options, node, children, uses_namespace);
    reserve_for(static_cast<Py_ssize_t>(children.size()));
    for (size_t i = 0; i < children.size(); ++i) {
      if (with_path) {
        Ref entry = node_entry(node, static_cast<Py_ssize_t>(i));
        path_prefix.push_back(entry.get());
        visit(std::move(children[i]), depth + 1);
        path_prefix.pop_back();
      } else {
        visit(std::move(children[i]), depth + 1);
      }
    }
  }

  [[gnu::noinline]] void expand(PyObject* obj, const NodeInfo& info, Py_ssize_t depth) {
    Py_ssize_t leaves_before = num_leaves;
    Py_ssize_t nodes_before = static_cast<Py_ssize_t>(nodes.size());
    if (info.kind == NodeKind::Tuple || info.kind == NodeKind::NamedTuple) {
      // The most common containers: no intermediate child list. A tuple holds its items.
      Py_ssize_t n = PyTuple_GET_SIZE(obj);
      reserve_for(n);
      for (Py_ssize_t i = 0; i < n; ++i) {
        visit_child(Ref::borrow(PyTuple_GET_ITEM(obj, i)), i, depth + 1);
      }
      if constexpr (kBuildNodes) {
        Node& node = append_node(info.kind, n, leaves_before, nodes_before);
        if (info.kind == NodeKind::NamedTuple) {
          node.node_data = Ref::borrow(reinterpret_cast<PyObject*>(Py_TYPE(obj)));
        }
      }
      return;
    }
    if (info.kind == NodeKind::List) {
      // As optree: the length is read once and each item when it is reached, so the Python
      // code run meanwhile (a leaf predicate, a flatten function, or another thread) may
      // change the list. A shrunk list raises IndexError; items appended are not visited.
      Py_ssize_t n = PyList_GET_SIZE(obj);
      reserve_for(n);
      for (Py_ssize_t i = 0; i < n; ++i) {
#ifdef Py_GIL_DISABLED
        visit_child(check_ref(PyList_GetItemRef(obj, i)), i, depth + 1);
#else
        if (i >= PyList_GET_SIZE(obj)) [[unlikely]]
          list_index_out_of_range();
        visit_child(Ref::borrow(PyList_GET_ITEM(obj, i)), i, depth + 1);
#endif
      }
      if constexpr (kBuildNodes) append_node(NodeKind::List, n, leaves_before, nodes_before);
      return;
    }
    Node node;
    if (info.kind == NodeKind::Dict || info.kind == NodeKind::OrderedDict ||
        info.kind == NodeKind::DefaultDict) {
      expand_dict(obj, info, depth, node);
    } else {
      expand_other(obj, info, depth, node);
    }
    if constexpr (kBuildNodes) {
      Node& slot = append_node(node.kind, node.arity, leaves_before, nodes_before);
      slot.node_data = std::move(node.node_data);
      slot.node_entries = std::move(node.node_entries);
      slot.custom = std::move(node.custom);
      slot.original_keys = std::move(node.original_keys);
    }
  }

  // Appends the node of the container whose subtree was built from `nodes_before` on, in place
  // (a tuple's or list's node is never built elsewhere and moved). The caller fills its data.
  [[gnu::always_inline]] Node& append_node(NodeKind kind, Py_ssize_t arity,
                                           Py_ssize_t leaves_before, Py_ssize_t nodes_before) {
    flush_leaf_nodes();
    Py_ssize_t num_nodes = static_cast<Py_ssize_t>(nodes.size()) - nodes_before + 1;
    if (pack) shape.push_back(TreeSpec::packed_word(kind, arity));
    Node& node = nodes.emplace_back();
    node.kind = kind;
    node.arity = arity;
    node.num_leaves = num_leaves - leaves_before;
    node.num_nodes = num_nodes;
    return node;
  }

  // Room for at least `children` more leaves and nodes, so wide containers do not reallocate
  // (and move every node built so far) again and again.
  [[gnu::always_inline]] void reserve_for(Py_ssize_t children) {
    if constexpr (kBuildNodes) {
      size_t wanted = nodes.size() + static_cast<size_t>(children) + 1;
      if (wanted > nodes.capacity()) [[unlikely]]
        grow_nodes(wanted);
    }
    if constexpr (kCollectLeaves) leaves.reserve(leaves.size() + static_cast<size_t>(children));
  }

  [[gnu::noinline]] void grow_nodes(size_t wanted) {
    nodes.reserve(std::max(wanted, 2 * nodes.capacity()));
    if (pack) shape.reserve(nodes.capacity());
  }
};

}  // namespace

// optree records a namespace whose dict_insertion_ordered is on in every treespec flattened
// under it, dicts or not.
bool namespace_orders_dicts(RegistryView& view, const FlattenOptions& options) {
  return !options.ns.empty() && view.snapshot().dicts_insertion_ordered(options.ns, false);
}

TreeSpec TreeSpec::flatten(PyObject* tree, const FlattenOptions& options, Ref* leaves_out,
                           Ref* paths_out) {
  TreeSpec spec;
  spec.none_is_leaf_ = options.none_is_leaf;
  auto finish = [&](auto& flattener) {
    flattener.run(tree);
    if (flattener.uses_namespace || namespace_orders_dicts(flattener.view, options)) {
      spec.ns_ = options.ns;
    }
  };
  if (leaves_out == nullptr && paths_out == nullptr) {
    Flattener<true, false> flattener(options, spec.nodes_, spec.packed_shape_);
    finish(flattener);
    return spec;
  }
  Flattener<true, true> flattener(options, spec.nodes_, spec.packed_shape_);
  flattener.with_path = paths_out != nullptr;
  finish(flattener);
  if (leaves_out != nullptr) *leaves_out = flattener.leaves.to_list();
  if (paths_out != nullptr) *paths_out = flattener.paths.to_list();
  return spec;
}

Ref flatten_leaves(PyObject* tree, const FlattenOptions& options) {
  std::vector<Node> unused;
  std::vector<uint64_t> unused_shape;
  Flattener<false, true> flattener(options, unused, unused_shape);
  flattener.run(tree);
  return flattener.leaves.to_list();
}

bool is_leaf_object(PyObject* obj, const FlattenOptions& options) {
  RegistryView view;
  return classify(obj, view, options).kind == NodeKind::Leaf;
}

std::optional<std::vector<Ref>> TreeSpec::collection_children(PyObject* collection,
                                                              const FlattenOptions& options) {
  RegistryView view;
  NodeInfo info = classify(collection, view, options);
  if (info.kind == NodeKind::Leaf || info.kind == NodeKind::None) return std::nullopt;
  Node node;
  std::vector<Ref> children;
  bool uses_namespace = false;
  expand_node(collection, info, view, options, node, children, uses_namespace);
  return children;
}

TreeSpec TreeSpec::from_collection(PyObject* collection,
                                   const std::vector<const TreeSpec*>& children,
                                   const FlattenOptions& options) {
  RegistryView view;
  NodeInfo info = classify(collection, view, options);
  TreeSpec spec;
  spec.none_is_leaf_ = options.none_is_leaf;
  if (info.kind == NodeKind::Leaf) return make_leaf(options.none_is_leaf);
  if (info.kind == NodeKind::None) return make_none(options.none_is_leaf);
  Node node;
  std::vector<Ref> raw_children;
  bool uses_namespace = false;
  expand_node(collection, info, view, options, node, raw_children, uses_namespace);
  // A custom flatten function runs again here and may give another number of children than
  // the first time (collection_children()): the node would not match its subtrees.
  if (node.arity != static_cast<Py_ssize_t>(children.size())) {
    raise(PyExc_RuntimeError,
          "PyTree custom flatten function for type " + repr_of(type_of(collection)) +
              " returned a different number of children (" + std::to_string(node.arity) +
              ") than before (" + std::to_string(children.size()) + ").");
  }
  // The children's namespace, which they must agree on.
  std::string common;
  for (const TreeSpec* child : children) {
    if (child->none_is_leaf_ != options.none_is_leaf) {
      raise(PyExc_ValueError, options.none_is_leaf
                                  ? "Expected treespec(s) with `none_is_leaf=True`."
                                  : "Expected treespec(s) with `none_is_leaf=False`.");
    }
    if (!child->ns_.empty()) {
      if (common.empty()) {
        common = child->ns_;
      } else if (common != child->ns_) {
        raise(PyExc_ValueError, "Expected treespecs with the same namespace, got " +
                                    namespace_repr(common) + " vs. " + namespace_repr(child->ns_) +
                                    ".");
      }
    }
  }
  if (!common.empty()) {
    // An empty namespace of the caller is promoted to the children's.
    if (!options.ns.empty() && options.ns != common) {
      raise(PyExc_ValueError, "Expected treespec(s) with namespace " + namespace_repr(options.ns) +
                                  ", got " + namespace_repr(common) + ".");
    }
    spec.ns_ = common;
  } else if (uses_namespace || namespace_orders_dicts(view, options)) {
    spec.ns_ = options.ns;
  }
  for (const TreeSpec* child : children) {
    node.num_leaves += child->num_leaves();
    spec.nodes_.insert(spec.nodes_.end(), child->nodes_.begin(), child->nodes_.end());
  }
  node.num_nodes = static_cast<Py_ssize_t>(spec.nodes_.size()) + 1;
  spec.nodes_.push_back(std::move(node));
  if (!spec.ns_.empty()) spec.check_resolves_in(spec.ns_, "composed into a collection");
  return spec;
}

// ------------------------------------------------------------------------ leaf iterator

LeafIterator::LeafIterator(PyObject* tree, const FlattenOptions& options)
    : root_(Ref::borrow(tree)), options_(options) {
  if (options_.leaf_predicate != nullptr && options_.leaf_predicate != Py_None) {
    predicate_ = Ref::borrow(options_.leaf_predicate);
  }
  options_.leaf_predicate = predicate_.get();
  if (!options_.dict_insertion_ordered.has_value()) {
    options_.dict_insertion_ordered = is_dict_insertion_ordered(options_.ns, true);
  }
}

namespace {

#if PY_VERSION_HEX >= 0x030D0000
inline PyThreadState* this_thread_state() { return PyThreadState_GetUnchecked(); }
#else
inline PyThreadState* this_thread_state() { return _PyThreadState_UncheckedGet(); }
#endif

}  // namespace

Ref LeafIterator::next() {
  // The predicate and custom flatten functions are Python code: they may call next() on this
  // iterator (refused: the lock is not recursive), and other threads may call it meanwhile
  // (they wait their turn).
  PyThreadState* thread = this_thread_state();
  if (!mutex_.try_lock()) [[unlikely]]
    wait_for_turn(thread);
  running_.store(thread, std::memory_order_release);
  struct Done {
    LeafIterator& self;
    ~Done() {
      self.running_.store(nullptr, std::memory_order_release);  // before unlocking
      self.mutex_.unlock();
    }
  } done{*this};
  return next_locked();
}

void LeafIterator::wait_for_turn(PyThreadState* thread) {
  // Never this thread's own state from an earlier next(): that is reset before unlocking.
  if (running_.load(std::memory_order_acquire) == thread) {
    raise(PyExc_RuntimeError, "PyTreeIter is already iterating.");
  }
  // Detached while waiting, so neither the GIL holder nor a free-threaded stop-the-world waits
  // on this thread.
  Py_BEGIN_ALLOW_THREADS
    mutex_.lock();
  Py_END_ALLOW_THREADS
}

std::unique_lock<LightMutex> LeafIterator::try_lock_idle() const noexcept {
  // try_lock by the thread that holds the mutex would be undefined: that one is inside next().
  if (running_.load(std::memory_order_acquire) == this_thread_state()) return {};
  return std::unique_lock(mutex_, std::try_to_lock);
}

Ref LeafIterator::next_locked() {
  RegistryView view;
  auto visit = [&](PyObject* obj) -> Ref {
    NodeInfo info = classify(obj, view, options_);
    if (info.kind == NodeKind::Leaf) return Ref::borrow(obj);
    if (static_cast<Py_ssize_t>(stack_.size()) >= kMaxRecursionDepth) {
      raise(PyExc_RecursionError, "Maximum recursion depth exceeded during flattening the tree.");
    }
    Frame frame;
    Node node;
    bool uses_namespace = false;
    expand_node(obj, info, view, options_, node, frame.children, uses_namespace);
    stack_.push_back(std::move(frame));
    return Ref();
  };
  if (!root_done_) {
    root_done_ = true;
    Ref root = std::move(root_);  // the first frame (if any) holds it from here on
    Ref leaf = visit(root.get());
    if (leaf) return leaf;
  }
  while (!stack_.empty()) {
    Frame& frame = stack_.back();
    if (frame.position >= frame.children.size()) {
      stack_.pop_back();
      continue;
    }
    Ref child = std::move(frame.children[frame.position++]);  // held no longer than needed
    Ref leaf = visit(child.get());
    if (leaf) return leaf;
  }
  return Ref();
}

}  // namespace optree
