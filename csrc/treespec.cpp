// Structure queries, matching, comparison, hashing, text and pickling of treespecs.
#include "optree/treespec.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <utility>

#include "internal.h"
#include "optree/introspection.h"
#include "optree/text.h"

namespace optree {

PyObject* dict_keys_of(const Node& node) {
  if (node.kind == NodeKind::DefaultDict) return PyTuple_GET_ITEM(node.node_data.get(), 1);
  return node.node_data.get();
}

bool is_dict_kind(NodeKind kind) {
  return kind == NodeKind::Dict || kind == NodeKind::OrderedDict || kind == NodeKind::DefaultDict;
}

namespace {

// x == y for two exact str.
bool str_equal(PyObject* x, PyObject* y) noexcept {
  Py_ssize_t length = PyUnicode_GET_LENGTH(x);
  if (length != PyUnicode_GET_LENGTH(y)) return false;
  int kind = PyUnicode_KIND(x);
  if (kind != PyUnicode_KIND(y)) return false;  // canonical: equal text, equal kind
  return std::memcmp(PyUnicode_DATA(x), PyUnicode_DATA(y), static_cast<size_t>(length) * kind) == 0;
}

// Item comparison inside a tuple, as tuple comparison makes it (== with the identity
// shortcut), without the protocol's dispatch for exact str and exact tuples of those. Deeper
// tuples and other objects go through the protocol.
bool items_equal(PyObject* a, PyObject* b, int depth) {
  if (a == b) return true;
  if (PyUnicode_CheckExact(a) && PyUnicode_CheckExact(b)) return str_equal(a, b);
  constexpr int kMostNested = 8;
  if (PyTuple_CheckExact(a) && PyTuple_CheckExact(b) && depth < kMostNested) {
    // As tuple comparison: items up to the shorter length, then the lengths.
    Py_ssize_t n = std::min(PyTuple_GET_SIZE(a), PyTuple_GET_SIZE(b));
    for (Py_ssize_t i = 0; i < n; ++i) {
      if (!items_equal(PyTuple_GET_ITEM(a, i), PyTuple_GET_ITEM(b, i), depth + 1)) return false;
    }
    return PyTuple_GET_SIZE(a) == PyTuple_GET_SIZE(b);
  }
  return check_int(PyObject_RichCompareBool(a, b, Py_EQ)) != 0;
}

// Whether node data `a` and `b` are equal as optree decides it: not (a != b). Custom metadata is
// mostly exact str and tuples of them (a dataclass's (name, value) pairs), compared here
// without the protocol's dispatch; anything else through __ne__.
bool objects_equal(PyObject* a, PyObject* b) {
  if (a == b) return true;
  if (a == nullptr || b == nullptr) return false;
  if ((PyUnicode_CheckExact(a) && PyUnicode_CheckExact(b)) ||
      (PyTuple_CheckExact(a) && PyTuple_CheckExact(b))) {
    return items_equal(a, b, 0);  // str != and tuple != decide as == does
  }
  return check_int(PyObject_RichCompareBool(a, b, Py_NE)) == 0;
}

// list == list for two key lists, without the generic comparison's dispatch: an identical key
// needs no call.
bool key_lists_equal(PyObject* a, PyObject* b) {
  if (a == b) return true;
  if (a == nullptr || b == nullptr || !PyList_CheckExact(a) || !PyList_CheckExact(b)) {
    return objects_equal(a, b);
  }
  if (PyList_GET_SIZE(a) != PyList_GET_SIZE(b)) return false;
  // Sizes re-read on every step, as list comparison does: a key's __eq__ runs Python code.
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(a) && i < PyList_GET_SIZE(b); ++i) {
    PyObject* x = PyList_GET_ITEM(a, i);
    PyObject* y = PyList_GET_ITEM(b, i);
    if (x == y) continue;
    if (PyUnicode_CheckExact(x) && PyUnicode_CheckExact(y)) {
      // What str.__eq__ does, without the comparison protocol's dispatch.
      if (!str_equal(x, y)) return false;
      continue;
    }
    Ref hold_x = Ref::borrow(x);
    Ref hold_y = Ref::borrow(y);
    if (!check_int(PyObject_RichCompareBool(x, y, Py_EQ))) return false;
  }
  return PyList_GET_SIZE(a) == PyList_GET_SIZE(b);
}

// Structural equality of two nodes, ignoring counts (callers compare those).
bool nodes_equal(const Node& a, const Node& b) {
  if (a.kind != b.kind || a.arity != b.arity) return false;
  switch (a.kind) {
    case NodeKind::Leaf:
    case NodeKind::None:
    case NodeKind::Tuple:
    case NodeKind::List:
      return true;
    case NodeKind::Dict:
    case NodeKind::OrderedDict:
      return key_lists_equal(a.node_data.get(), b.node_data.get());
    case NodeKind::Deque:
    case NodeKind::NamedTuple:
    case NodeKind::StructSequence:
    case NodeKind::DefaultDict:
      return objects_equal(a.node_data.get(), b.node_data.get());
    case NodeKind::Custom:
      return (a.custom == b.custom ||
              (a.custom->type == b.custom->type && a.custom->ns == b.custom->ns)) &&
             objects_equal(a.node_data.get(), b.node_data.get());
    default:
      return false;
  }
}

}  // namespace

TreeSpec TreeSpec::make_leaf(bool none_is_leaf) {
  TreeSpec spec;
  spec.none_is_leaf_ = none_is_leaf;
  Node node;
  node.num_leaves = 1;
  node.num_nodes = 1;
  spec.nodes_.push_back(std::move(node));
  return spec;
}

TreeSpec TreeSpec::make_none(bool none_is_leaf) {
  if (none_is_leaf) return make_leaf(true);
  TreeSpec spec;
  Node node;
  node.kind = NodeKind::None;
  node.num_nodes = 1;
  spec.nodes_.push_back(std::move(node));
  return spec;
}

std::vector<Py_ssize_t> TreeSpec::child_roots(Py_ssize_t index) const {
  const Node& node = nodes_[static_cast<size_t>(index)];
  std::vector<Py_ssize_t> roots(static_cast<size_t>(node.arity));
  Py_ssize_t position = index - 1;
  for (Py_ssize_t i = node.arity - 1; i >= 0; --i) {
    roots[static_cast<size_t>(i)] = position;
    position -= nodes_[static_cast<size_t>(position)].num_nodes;
  }
  return roots;
}

TreeSpec TreeSpec::subtree(Py_ssize_t root_index) const {
  TreeSpec spec;
  spec.none_is_leaf_ = none_is_leaf_;
  spec.ns_ = ns_;
  Py_ssize_t size = nodes_[static_cast<size_t>(root_index)].num_nodes;
  spec.nodes_.assign(nodes_.begin() + (root_index - size + 1), nodes_.begin() + root_index + 1);
  return spec;
}

std::vector<TreeSpec> TreeSpec::children() const {
  root();  // raises if uninitialized

  std::vector<TreeSpec> result;
  for (Py_ssize_t root : child_roots(num_nodes() - 1)) result.push_back(subtree(root));
  return result;
}

TreeSpec TreeSpec::child(Py_ssize_t index) const {
  if (index < 0 || index >= root().arity) {
    raise(PyExc_IndexError, "PyTreeSpec::Child() index out of range.");
  }
  return subtree(child_roots(num_nodes() - 1)[static_cast<size_t>(index)]);
}

Ref node_entry(const Node& node, Py_ssize_t index) {
  if (is_dict_kind(node.kind)) return Ref::borrow(PyList_GET_ITEM(dict_keys_of(node), index));
  if (node.kind == NodeKind::Custom && node.node_entries) {
    return Ref::borrow(PyTuple_GET_ITEM(node.node_entries.get(), index));
  }
  return check_ref(PyLong_FromSsize_t(index));
}

Ref node_entries(const Node& node) {
  Ref list = check_ref(PyList_New(node.arity));
  for (Py_ssize_t i = 0; i < node.arity; ++i) {
    PyList_SET_ITEM(list.get(), i, node_entry(node, i).release());
  }
  return list;
}

Ref TreeSpec::entries() const { return node_entries(root()); }

Ref TreeSpec::entry(Py_ssize_t index) const {
  if (index < 0 || index >= root().arity) {
    raise(PyExc_IndexError, "PyTreeSpec::Entry() index out of range.");
  }
  return node_entry(root(), index);
}

Ref TreeSpec::paths() const {
  return collect_leaf_paths(
      *this,
      [this](Py_ssize_t index, Py_ssize_t i) {
        return node_entry(nodes_[static_cast<size_t>(index)], i);
      },
      [](Ref path) { return path; });
}

bool TreeSpec::is_leaf(bool strict) const {
  root();  // raises if uninitialized

  if (strict) return num_nodes() == 1 && root().kind == NodeKind::Leaf;
  return num_nodes() == 1;
}

PyObject* node_type_object(const Node& node, LazyBuiltins& builtins) {
  switch (node.kind) {
    case NodeKind::None:
      return reinterpret_cast<PyObject*>(Py_TYPE(Py_None));
    case NodeKind::Tuple:
      return reinterpret_cast<PyObject*>(&PyTuple_Type);
    case NodeKind::List:
      return reinterpret_cast<PyObject*>(&PyList_Type);
    case NodeKind::Dict:
      return reinterpret_cast<PyObject*>(&PyDict_Type);
    case NodeKind::OrderedDict:
      return reinterpret_cast<PyObject*>(builtins.get().ordered_dict);
    case NodeKind::DefaultDict:
      return reinterpret_cast<PyObject*>(builtins.get().default_dict);
    case NodeKind::Deque:
      return reinterpret_cast<PyObject*>(builtins.get().deque);
    case NodeKind::NamedTuple:
    case NodeKind::StructSequence:
      return node.node_data.get();
    case NodeKind::Custom:
      return node.custom->type;
    default:
      return Py_None;
  }
}

PyObject* TreeSpec::type_object() const {
  LazyBuiltins builtins;
  return node_type_object(root(), builtins);
}

// ------------------------------------------------------------------------- prefix / compose

namespace {

// Whether a node of `b` can stand where `a` is, as flatten_up_to would accept it: dict kinds
// are interchangeable and match by key set; deque maxlen and defaultdict factories are free.
[[gnu::noinline]] bool nodes_compatible(const Node& a, const Node& b) {
  if (is_dict_kind(a.kind)) {
    if (!is_dict_kind(b.kind) || a.arity != b.arity) return false;
    Ref a_keys = check_ref(PySet_New(dict_keys_of(a)));
    Ref b_keys = check_ref(PySet_New(dict_keys_of(b)));
    return check_int(PyObject_RichCompareBool(a_keys.get(), b_keys.get(), Py_EQ)) != 0;
  }
  if (a.kind != b.kind || a.arity != b.arity) return false;
  if (a.kind == NodeKind::Deque) return true;
  return nodes_equal(a, b);
}

}  // namespace

std::optional<std::string> dict_key_mismatch(PyObject* expected_keys, PyObject* got_keys) {
  Ref expected_set = check_ref(PySet_New(expected_keys));
  Ref got_set = check_ref(PySet_New(got_keys));
  if (check_int(PyObject_RichCompareBool(expected_set.get(), got_set.get(), Py_EQ))) {
    return std::nullopt;
  }
  // The keys of `source` that are in `selection`, in the order of `source`.
  auto ordered = [](PyObject* source, PyObject* selection) {
    Ref list = check_ref(PyList_New(0));
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(source); ++i) {
      PyObject* key = PyList_GET_ITEM(source, i);
      if (check_int(PySet_Contains(selection, key))) check_int(PyList_Append(list.get(), key));
    }
    return list;
  };
  std::string message = "dictionary key mismatch; expected key(s): " + repr_of(expected_keys) +
                        ", got key(s): " + repr_of(got_keys);
  Ref missing = check_ref(PyNumber_Subtract(expected_set.get(), got_set.get()));
  Ref extra = check_ref(PyNumber_Subtract(got_set.get(), expected_set.get()));
  if (PySet_GET_SIZE(missing.get()) > 0) {
    message += ", missing key(s): " + repr_of(ordered(expected_keys, missing.get()).get());
  }
  if (PySet_GET_SIZE(extra.get()) > 0) {
    message += ", extra key(s): " + repr_of(ordered(got_keys, extra.get()).get());
  }
  return message;
}

std::vector<size_t> matching_children(const Node& a, const Node& b) {
  std::vector<size_t> order(static_cast<size_t>(a.arity));
  if (!is_dict_kind(a.kind) || !is_dict_kind(b.kind)) {
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    return order;
  }
  PyObject* a_keys = dict_keys_of(a);
  PyObject* b_keys = dict_keys_of(b);
  Ref position = check_ref(PyDict_New());
  for (Py_ssize_t j = 0; j < PyList_GET_SIZE(b_keys); ++j) {
    Ref index = check_ref(PyLong_FromSsize_t(j));
    check_int(PyDict_SetItem(position.get(), PyList_GET_ITEM(b_keys, j), index.get()));
  }
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(a_keys); ++i) {
    PyObject* index = PyDict_GetItemWithError(position.get(), PyList_GET_ITEM(a_keys, i));
    if (index == nullptr) {
      if (!PyErr_Occurred()) PyErr_SetString(PyExc_KeyError, "dictionary key mismatch");
      throw_python_error();
    }
    order[static_cast<size_t>(i)] = PyLong_AsSize_t(index);
  }
  return order;
}

bool TreeSpec::is_prefix(const TreeSpec& other, bool strict) const {
  root();
  other.root();
  if (none_is_leaf_ != other.none_is_leaf_) return false;
  // Pairs of matching subtrees still to compare, first child on top.
  std::vector<std::pair<Py_ssize_t, Py_ssize_t>> agenda;
  agenda.emplace_back(num_nodes() - 1, other.num_nodes() - 1);
  while (!agenda.empty()) {
    auto [mine, theirs] = agenda.back();
    agenda.pop_back();
    const Node& a = nodes_[static_cast<size_t>(mine)];
    const Node& b = other.nodes_[static_cast<size_t>(theirs)];
    if (a.kind == NodeKind::Leaf) continue;
    if (!nodes_compatible(a, b)) return false;
    std::vector<Py_ssize_t> my_roots = child_roots(mine);
    std::vector<Py_ssize_t> their_roots = other.child_roots(theirs);
    std::vector<size_t> order = matching_children(a, b);
    for (size_t i = my_roots.size(); i-- > 0;) {
      agenda.emplace_back(my_roots[i], their_roots[order[i]]);
    }
  }
  // Strict: the other way round must fail (dict kinds, deques... can be mutual prefixes).
  return !strict || !other.is_prefix(*this, false);
}

TreeSpec TreeSpec::empty_combination(const TreeSpec& other) const {
  root();  // raises if uninitialized
  other.root();
  if (none_is_leaf_ != other.none_is_leaf_) {
    raise(PyExc_ValueError, "PyTreeSpecs must have the same none_is_leaf value.");
  }
  if (!ns_.empty() && !other.ns_.empty() && ns_ != other.ns_) {
    raise(PyExc_ValueError, "PyTreeSpecs must have the same namespace, got " + namespace_repr(ns_) +
                                " vs. " + namespace_repr(other.ns_) + ".");
  }
  TreeSpec result;
  result.none_is_leaf_ = none_is_leaf_;
  result.ns_ = ns_.empty() ? other.ns_ : ns_;
  return result;
}

void TreeSpec::check_resolves_in(const std::string& target, const char* action) const {
  std::optional<RegistryView> view;  // pinned at the first custom node
  for (const Node& node : nodes_) {
    if (node.kind != NodeKind::Custom) continue;
    if (!view) view.emplace();
    PyObject* type = node.custom->type;
    const RegistrationPtr* found =
        view->snapshot().table_for(target).find(reinterpret_cast<PyTypeObject*>(type));
    if (found == nullptr || found->get() != node.custom.get()) [[unlikely]] {
      raise(PyExc_ValueError, std::string("PyTreeSpecs cannot be ") + action +
                                  ": custom PyTree type " + repr_of(type) +
                                  " no longer resolves to its original registration in "
                                  "namespace " +
                                  namespace_repr(target) + ".");
    }
  }
}

void check_namespace_merge(const TreeSpec& result, const TreeSpec& a, const TreeSpec& b) {
  if (result.ns().empty()) return;
  if (a.ns() != result.ns()) a.check_resolves_in(result.ns(), "merged");
  if (b.ns() != result.ns()) b.check_resolves_in(result.ns(), "merged");
}

TreeSpec TreeSpec::compose(const TreeSpec& inner) const {
  TreeSpec result = empty_combination(inner);
  check_namespace_merge(result, *this, inner);
  Py_ssize_t inner_leaves = inner.num_leaves();
  Py_ssize_t inner_nodes = inner.num_nodes();
  for (const Node& node : nodes_) {
    if (node.kind == NodeKind::Leaf) {
      result.nodes_.insert(result.nodes_.end(), inner.nodes_.begin(), inner.nodes_.end());
      continue;
    }
    Node copy = node;
    copy.num_nodes = (node.num_nodes - node.num_leaves) + node.num_leaves * inner_nodes;
    copy.num_leaves = node.num_leaves * inner_leaves;
    result.nodes_.push_back(std::move(copy));
  }
  return result;
}

// ---------------------------------------------------------------------------- flatten_up_to

namespace {

Ref sorted_dict_keys(PyObject* dict) {
  Ref keys = check_ref(PyDict_Keys(dict));
  return sorted_keys(keys.get());
}

// The word optree uses for the offending object in arity messages.
std::string container_word(const std::string& what) {
  return what == "list" || what == "deque" ? what : "tuple";
}

}  // namespace

namespace {

// The error of a dict-kind node whose object (one of the three builtin dict types) does not have
// its keys.
[[noreturn, gnu::noinline]] void dict_keys_differ(const Node& node, PyObject* obj) {
  Ref got_keys = sorted_dict_keys(obj);
  if (auto mismatch = dict_key_mismatch(dict_keys_of(node), got_keys.get())) {
    // Named after the treespec's node, as optree does, whatever the object's dict type.
    const char* word = node.kind == NodeKind::OrderedDict   ? "OrderedDict"
                       : node.kind == NodeKind::DefaultDict ? "defaultdict"
                                                            : "dict";
    raise(PyExc_ValueError, *mismatch + "; " + word + ": " + repr_of(obj) + ".");
  }
  // Equal key sets after all (a key's __eq__ or __hash__ changed the dict meanwhile).
  raise(PyExc_RuntimeError, "dictionary changed during flatten_up_to");
}

// The errors of match_node(), out of line so that the matching code stays small.
[[noreturn, gnu::noinline]] void not_an_instance(const char* what, PyObject* obj) {
  raise(PyExc_ValueError,
        std::string("Expected an instance of ") + what + ", got " + repr_of(obj) + ".");
}

// `what` names the node kind, and the object in the message unless it is a list or deque.
[[gnu::always_inline]] inline void check_arity(const Node& node, const char* what, Py_ssize_t got,
                                               PyObject* obj) {
  if (got != node.arity) [[unlikely]] {
    raise(PyExc_ValueError, std::string(what) + " arity mismatch; expected: " +
                                std::to_string(node.arity) + ", got: " + std::to_string(got) +
                                "; " + container_word(what) + ": " + repr_of(obj) + ".");
  }
}

[[noreturn, gnu::noinline]] void type_mismatch(const char* what, PyObject* expected_type,
                                               PyObject* obj, const char* container) {
  raise(PyExc_ValueError, std::string(what) +
                              " type mismatch; expected type: " + repr_of(expected_type) +
                              ", got type: " + repr_of(reinterpret_cast<PyObject*>(Py_TYPE(obj))) +
                              "; " + container + ": " + repr_of(obj) + ".");
}

// match_node() for one kind (or family of kinds) each.

void match_none(PyObject* obj) {
  if (obj != Py_None) raise(PyExc_ValueError, "Expected None, got " + repr_of(obj) + ".");
}

void match_tuple(const Node& node, PyObject* obj, std::vector<Ref>& children) {
  if (!PyTuple_CheckExact(obj)) not_an_instance("tuple", obj);
  check_arity(node, "tuple", PyTuple_GET_SIZE(obj), obj);
  append_items(children, obj, node.arity);
}

void match_list(const Node& node, PyObject* obj, std::vector<Ref>& children) {
  if (!PyList_CheckExact(obj)) not_an_instance("list", obj);
  // A consistent copy: other threads (without a GIL) or Python code may change the list.
  Ref items = check_ref(PyList_AsTuple(obj));
  check_arity(node, "list", PyTuple_GET_SIZE(items.get()), obj);
  append_items(children, items.get(), node.arity);
}

void match_deque(const Node& node, PyObject* obj, LazyBuiltins& builtins,
                 std::vector<Ref>& children) {
  if (Py_TYPE(obj) != builtins.get().deque) not_an_instance("collections.deque", obj);
  Ref items = check_ref(PySequence_Tuple(obj));
  check_arity(node, "deque", PyTuple_GET_SIZE(items.get()), obj);
  append_items(children, items.get(), node.arity);
}

// NamedTuple and StructSequence: a tuple subclass of the node's very class.
void match_tuple_class(const Node& node, PyObject* obj, LazyBuiltins& builtins,
                       std::vector<Ref>& children) {
  bool named = node.kind == NodeKind::NamedTuple;
  auto* type = reinterpret_cast<PyObject*>(Py_TYPE(obj));
  if (!PyTuple_Check(obj) || !(named ? is_namedtuple_class(type, builtins.get())
                                     : is_structseq_class(type, builtins.get()))) {
    not_an_instance(named ? "collections.namedtuple" : "PyStructSequence type", obj);
  }
  const char* what = named ? "namedtuple" : "PyStructSequence";
  check_arity(node, what, PyTuple_GET_SIZE(obj), obj);
  if (type != node.node_data.get()) type_mismatch(what, node.node_data.get(), obj, "tuple");
  append_items(children, obj, node.arity);
}

// The dict kinds: any of the three builtin dict types stands for any other; subclasses do not.
void match_dict(const Node& node, PyObject* obj, LazyBuiltins& builtins,
                std::vector<Ref>& children) {
  PyTypeObject* type = Py_TYPE(obj);
  if (type != &PyDict_Type && type != builtins.get().ordered_dict &&
      type != builtins.get().default_dict) {
    not_an_instance("dict, collections.OrderedDict, or collections.defaultdict", obj);
  }
  PyObject* expected_keys = dict_keys_of(node);
  // The key sets agree when the sizes do and every expected key is there; only a mismatch
  // needs the sorted keys and set differences of the message. None of the three types
  // overrides item lookup for a present key.
  bool same_keys = PyDict_GET_SIZE(obj) == node.arity;
  for (Py_ssize_t i = 0; same_keys && i < node.arity; ++i) {
    PyObject* value = PyDict_GetItemWithError(obj, PyList_GET_ITEM(expected_keys, i));
    if (value == nullptr && PyErr_Occurred()) throw_python_error();
    same_keys = value != nullptr;
    if (same_keys) children.push_back(Ref::borrow(value));
  }
  if (!same_keys) dict_keys_differ(node, obj);
}

// A custom node: flattened again, its metadata and arity compared with the node's.
void match_custom(const Node& node, PyObject* obj, std::optional<RegistryView>& view,
                  std::vector<Ref>& children) {
  PyObject* expected_type = node.custom->type;
  if (reinterpret_cast<PyObject*>(Py_TYPE(obj)) != expected_type) {
    type_mismatch("Custom node", expected_type, obj, "value");
  }
  Node probe;
  bool uses_namespace = false;
  if (!view) view.emplace();  // one registry pin per call, taken at the first custom node
  NodeInfo info{NodeKind::Custom, &node.custom};
  FlattenOptions options;
  expand_node(obj, info, *view, options, probe, children, uses_namespace);
  if (!objects_equal(probe.node_data.get(), node.node_data.get())) {
    raise(PyExc_ValueError,
          "Mismatch custom node data; expected: " + repr_of(node.node_data.get()) +
              ", got: " + repr_of(probe.node_data.get()) + "; value: " + repr_of(obj) + ".");
  }
  if (probe.arity != node.arity) {
    raise(PyExc_ValueError, "Custom type arity mismatch; expected: " + std::to_string(node.arity) +
                                ", got: " + std::to_string(probe.arity) +
                                "; value: " + repr_of(obj) + ".");
  }
}

// Checks that `obj` matches the non-leaf node `node` as flatten_up_to requires and returns its
// children in treespec order. Kept out of the recursion so its large frame (error messages)
// is not on the stack once per level.
[[gnu::noinline]] void match_node(const Node& node, PyObject* obj, LazyBuiltins& builtins,
                                  std::optional<RegistryView>& view, std::vector<Ref>& children) {
  switch (node.kind) {
    case NodeKind::Leaf:
      return;
    case NodeKind::None:
      return match_none(obj);
    case NodeKind::Tuple:
      return match_tuple(node, obj, children);
    case NodeKind::List:
      return match_list(node, obj, children);
    case NodeKind::Deque:
      return match_deque(node, obj, builtins, children);
    case NodeKind::NamedTuple:
    case NodeKind::StructSequence:
      return match_tuple_class(node, obj, builtins, children);
    case NodeKind::Dict:
    case NodeKind::OrderedDict:
    case NodeKind::DefaultDict:
      return match_dict(node, obj, builtins, children);
    case NodeKind::Custom:
      return match_custom(node, obj, view, children);
    default:
      raise(PyExc_SystemError, "unsupported node kind");
  }
}

}  // namespace

Ref TreeSpec::flatten_up_to(PyObject* tree) const {
  root();  // raises if uninitialized
  // The subtrees are gathered here and put in a list only at the end: a list made up front
  // would be visible (through gc.get_objects()) with empty slots to the Python code that runs
  // meanwhile (custom flatten functions, key hashing, reprs of error messages).
  Py_ssize_t n = num_leaves();
  std::unique_ptr<PyObject*[]> items(new PyObject*[static_cast<size_t>(n)]);
  flatten_up_to(tree, items.get(), 1);
  Ref result = Ref::steal(PyList_New(n));
  if (!result) {
    for (Py_ssize_t i = 0; i < n; ++i) Py_DECREF(items[i]);
    throw_python_error();
  }
  if (n > 0) {
    std::memcpy(reinterpret_cast<PyListObject*>(result.get())->ob_item, items.get(),
                static_cast<size_t>(n) * sizeof(PyObject*));
  }
  return result;
}

void TreeSpec::flatten_up_to(PyObject* tree, PyObject** out, Py_ssize_t stride) const {
  root();  // raises if uninitialized
  Py_ssize_t unfilled = num_leaves();
  // Owned references at out[i * stride] for i in [filled_from, size); released (and the slots
  // set to null) on error.
  struct Subtrees {
    ~Subtrees() {
      if (!done) {
        for (Py_ssize_t i = filled_from; i < size; ++i) Py_CLEAR(items[i * stride]);
      }
    }
    PyObject** items;
    Py_ssize_t stride;
    Py_ssize_t size;
    Py_ssize_t filled_from = size;
    bool done = false;
  } subtrees{out, stride, unfilled};
  LazyBuiltins builtins;
  std::optional<RegistryView> view;
  // Depth first and last child first, as optree does: with several mismatches, the one it
  // reports is the first met in this order (and custom flatten functions run in this order
  // too). The leaves are therefore placed back to front.
  // A subtree (an owned reference) and the index of its node. Trivial, so that the agenda is
  // not initialized: the entries in [0, pending) are the live ones.
  struct Pending {
    Py_ssize_t index;
    PyObject* subtree;
  };
  // Each node is pushed at most once. Small treespecs (the common case of per-call overhead)
  // keep the agenda on the stack.
  constexpr size_t kOnStack = 16;
  Pending on_stack[kOnStack];
  std::unique_ptr<Pending[]> on_heap;
  if (nodes_.size() > kOnStack) on_heap.reset(new Pending[nodes_.size()]);
  Pending* const agenda = on_heap ? on_heap.get() : on_stack;
  size_t pending = 0;
  struct Release {
    Pending* agenda;
    size_t& pending;
    ~Release() {
      while (pending > 0) Py_DECREF(agenda[--pending].subtree);
    }
  } release{agenda, pending};
  agenda[pending++] = {num_nodes() - 1, Py_NewRef(tree)};
  std::vector<Ref> children;
  while (pending > 0) {
    --pending;
    Py_ssize_t index = agenda[pending].index;
    Ref subtree = Ref::steal(agenda[pending].subtree);  // held while Python code runs
    const Node& node = nodes_[static_cast<size_t>(index)];
    if (node.kind == NodeKind::Leaf) {
      if (unfilled == 0) raise(PyExc_SystemError, "inconsistent PyTreeSpec leaf count");
      subtrees.items[--unfilled * stride] = subtree.release();
      subtrees.filled_from = unfilled;
      continue;
    }
    PyObject* obj = subtree.get();
    Py_ssize_t position = index - 1;
    // Tuples and lists that match go straight onto the agenda; everything else (and every
    // mismatch, with its message) goes through match_node().
    PyObject** items = nullptr;
    if ((node.kind == NodeKind::Tuple && PyTuple_CheckExact(obj) &&
         PyTuple_GET_SIZE(obj) == node.arity) ||
        (node.kind == NodeKind::NamedTuple &&
         reinterpret_cast<PyObject*>(Py_TYPE(obj)) == node.node_data.get() &&
         PyTuple_GET_SIZE(obj) == node.arity)) {
      items = reinterpret_cast<PyTupleObject*>(obj)->ob_item;
    }
#ifndef Py_GIL_DISABLED
    // Without a GIL another thread may resize the list meanwhile: match_node() copies it.
    if (node.kind == NodeKind::List && PyList_CheckExact(obj) &&
        PyList_GET_SIZE(obj) == node.arity) {
      items = reinterpret_cast<PyListObject*>(obj)->ob_item;
    }
#endif
    // Child i goes to slot base + i, so the last child is popped first. Each slot joins the
    // live ones as it is filled.
    Pending* base = agenda + pending;
    if (items != nullptr) {
      for (Py_ssize_t i = 0; i < node.arity; ++i, ++pending) {
        base[i].subtree = Py_NewRef(items[i]);
      }
    } else if (is_dict_kind(node.kind) &&
               (Py_TYPE(obj) == &PyDict_Type || Py_TYPE(obj) == builtins.get().ordered_dict ||
                Py_TYPE(obj) == builtins.get().default_dict) &&
               PyDict_GET_SIZE(obj) == node.arity) {
      // As match_node() looks the keys up, straight into the agenda.
      PyObject* expected_keys = dict_keys_of(node);
      for (Py_ssize_t i = 0; i < node.arity; ++i, ++pending) {
        PyObject* key = PyList_GET_ITEM(expected_keys, i);
#if PY_VERSION_HEX >= 0x030D0000
        // A strong reference: without a GIL, another thread may remove the item meanwhile.
        PyObject* value = nullptr;
        if (check_int(PyDict_GetItemRef(obj, key, &value)) == 0) dict_keys_differ(node, obj);
        base[i].subtree = value;
#else
        PyObject* value = PyDict_GetItemWithError(obj, key);
        if (value == nullptr) {
          if (PyErr_Occurred()) throw_python_error();
          dict_keys_differ(node, obj);
        }
        base[i].subtree = Py_NewRef(value);
#endif
      }
    } else {
      children.clear();
      match_node(node, obj, builtins, view, children);
      for (Py_ssize_t i = 0; i < node.arity; ++i, ++pending) {
        base[i].subtree = children[static_cast<size_t>(i)].release();
      }
    }
    for (Py_ssize_t i = node.arity - 1; i >= 0; --i) {
      base[i].index = position;
      position -= nodes_[static_cast<size_t>(position)].num_nodes;
    }
  }
  if (unfilled != 0) raise(PyExc_SystemError, "inconsistent PyTreeSpec leaf count");
  subtrees.done = true;  // the caller owns them now
}

// ------------------------------------------------------------------------ equality and hash

void TreeSpec::pack_shape(const std::vector<Node>& nodes, std::vector<uint64_t>& shape) {
  shape.resize(nodes.size());
  uint64_t* word = shape.data();
  for (const Node& node : nodes) {
    *word++ = packed_word(node.kind, node.arity);
  }
}

namespace {

// Whether the node kind carries data that equality compares.
inline bool kind_has_data(NodeKind kind) {
  return kind == NodeKind::Custom || kind > NodeKind::List;
}

}  // namespace

bool TreeSpec::equals(const TreeSpec& other) const {
  if (this == &other) return true;
  root();
  other.root();
  // The namespace is not compared: custom nodes carry their registration's namespace already.
  if (none_is_leaf_ != other.none_is_leaf_ || nodes_.size() != other.nodes_.size()) return false;
  size_t num_nodes = nodes_.size();
  if (packed_shape_.size() == num_nodes && other.packed_shape_.size() == num_nodes) {
    const uint64_t* shape = packed_shape_.data();
    if (std::memcmp(shape, other.packed_shape_.data(), num_nodes * sizeof(uint64_t)) != 0) {
      return false;
    }
    for (size_t i = 0; i < num_nodes; ++i) {
      if (!kind_has_data(static_cast<NodeKind>(shape[i] & 0xff))) [[likely]]
        continue;
      const Node& a = nodes_[i];
      const Node& b = other.nodes_[i];
      if (!(a.node_data.get() == b.node_data.get() && a.custom == b.custom) && !nodes_equal(a, b))
          [[unlikely]]
        return false;
    }
    return true;
  }
  const Node* a = nodes_.data();
  const Node* b = other.nodes_.data();
  for (const Node* end = a + nodes_.size(); a != end; ++a, ++b) {
    // The counts follow from the kinds and arities of a valid post-order sequence.
    if (a->kind != b->kind || a->arity != b->arity) return false;
    // Identical data (and registration) needs no call: the common case for types.
    if (kind_has_data(a->kind) &&
        !(a->node_data.get() == b->node_data.get() && a->custom == b->custom) &&
        !nodes_equal(*a, *b)) [[unlikely]]
      return false;
  }
  return true;
}

namespace {

// Treespecs whose repr or hash runs on this thread. Like Py_ReprEnter, a call re-entered from
// the Python code it runs (a dict key or custom metadata holding the treespec itself) stops
// there instead of recursing without end; per thread, so that other threads still get the whole
// answer meanwhile (free-threaded builds).
thread_local std::vector<const TreeSpec*> reprs_running;
thread_local std::vector<const TreeSpec*> hashes_running;

class ReentryGuard {
 public:
  ReentryGuard(std::vector<const TreeSpec*>& running, const TreeSpec* spec) : running_(running) {
    entered_ = std::find(running.begin(), running.end(), spec) == running.end();
    if (entered_) running.push_back(spec);
  }
  ~ReentryGuard() {
    if (entered_) running_.pop_back();  // guards nest, so ours is the last one
  }
  ReentryGuard(const ReentryGuard&) = delete;
  ReentryGuard& operator=(const ReentryGuard&) = delete;
  // False if the same treespec was already running on this thread.
  bool entered() const noexcept { return entered_; }

 private:
  std::vector<const TreeSpec*>& running_;
  bool entered_;
};

// hash(obj) for TreeSpec::hash(): false if the treespec's hash is already running on this
// thread. Hashing anything but an exact str or int may run Python code, the only way back into
// the same hash: the guard is taken before the first such call (until then a re-entered call
// would have computed the same steps).
[[gnu::noinline]] bool guarded_hash(PyObject* obj, const TreeSpec* spec,
                                    std::optional<ReentryGuard>& guard, Py_hash_t& value) {
  if (!guard) {
    guard.emplace(hashes_running, spec);
    if (!guard->entered()) return false;
  }
  value = PyObject_Hash(obj);
  return true;
}

[[gnu::always_inline]] inline bool hash_object(PyObject* obj, const TreeSpec* spec,
                                               std::optional<ReentryGuard>& guard,
                                               Py_hash_t& value) {
  if (PyUnicode_CheckExact(obj) || PyLong_CheckExact(obj)) [[likely]] {
    value = PyObject_Hash(obj);
  } else if (!guarded_hash(obj, spec, guard, value)) {
    return false;
  }
  if (value == -1) throw_python_error();
  return true;
}

}  // namespace

Py_hash_t TreeSpec::hash() const {
  // What equality compares: metadata of custom nodes may be unhashable, and type objects are
  // equal only to themselves.
  root();
  uint64_t h = 0x9e3779b97f4a7c15ULL;
  auto mix = [&h](uint64_t value) { h = (h ^ value) * 0x100000001b3ULL + (h >> 29); };
  // A step of its own, so that it cannot cancel against the first node's kind.
  mix(none_is_leaf_ ? 0xc2b2ae3d27d4eb4fULL : 0x165667b19e3779f9ULL);
  std::optional<ReentryGuard> guard;
  Py_hash_t value;
  for (const Node& node : nodes_) {
    // One step per node for kind and arity: the steps form a dependency chain.
    mix(static_cast<uint64_t>(node.kind) | (static_cast<uint64_t>(node.arity) << 8));
    // Custom (0), then Leaf, None, Tuple, List: nothing more to mix for the latter.
    if (node.kind <= NodeKind::List) [[likely]] {
      if (node.kind == NodeKind::Custom) mix(reinterpret_cast<uintptr_t>(node.custom->type));
      continue;
    }
    if (node.kind == NodeKind::NamedTuple || node.kind == NodeKind::StructSequence) {
      mix(reinterpret_cast<uintptr_t>(node.node_data.get()));
      continue;
    }
    if (node.kind == NodeKind::Deque) {
      if (node.node_data.get() != Py_None) {
        if (!hash_object(node.node_data.get(), this, guard, value)) return 0;
        mix(static_cast<uint64_t>(value));
      }
      continue;
    }
    if (node.kind == NodeKind::DefaultDict) {
      if (!hash_object(PyTuple_GET_ITEM(node.node_data.get(), 0), this, guard, value)) return 0;
      mix(static_cast<uint64_t>(value));
    }
    // The dict kinds.
    PyObject* keys = dict_keys_of(node);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys); ++i) {
      if (!hash_object(PyList_GET_ITEM(keys, i), this, guard, value)) return 0;
      mix(static_cast<uint64_t>(value));
    }
  }
  auto result = static_cast<Py_hash_t>(h);
  return result == -1 ? -2 : result;
}

// ------------------------------------------------------------------------------------ repr

namespace {

// Appends to `text` the fixed parts of the text of a non-leaf node, and to `cuts` where each
// begins: arity + 1 pieces, the first before the first child, piece k between children k - 1
// and k, the last after the last child (one piece for a node without children).
[[gnu::noinline]] void append_node_pieces(const Node& node, std::string& text,
                                          std::vector<size_t>& cuts) {
  Py_ssize_t arity = node.arity;
  auto cut = [&] { cuts.push_back(text.size()); };
  // A sequence-like node: open, ", " between children, close.
  auto sequence = [&](const std::string& open, const std::string& close) {
    cut();
    text += open;
    for (Py_ssize_t k = 1; k < arity; ++k) {
      cut();
      text += ", ";
    }
    if (arity > 0) cut();
    text += close;
  };
  // A node whose children are labelled ("key: " or "name="): open, labels, close.
  auto labelled = [&](const std::string& open, auto&& label, const char* close) {
    cut();
    text += open;
    for (Py_ssize_t k = 0; k < arity; ++k) {
      if (k > 0) {
        cut();
        text += ", ";
      }
      label(k);
    }
    if (arity > 0) cut();
    text += close;
  };
  auto dict_label = [&](PyObject* keys) {
    return [&text, keys](Py_ssize_t k) {
      text += repr_of(PyList_GET_ITEM(keys, k));
      text += ": ";
    };
  };
  // The fields of a namedtuple or structseq type, one per child.
  auto field_names = [&](Ref fields, bool namedtuple) {
    if (!PyTuple_CheckExact(fields.get())) fields = check_ref(PySequence_Tuple(fields.get()));
    if (PyTuple_GET_SIZE(fields.get()) != arity) {
      std::string message = "Number of fields (" + std::to_string(PyTuple_GET_SIZE(fields.get())) +
                            ") of " + (namedtuple ? "namedtuple" : "PyStructSequence") + " type " +
                            repr_of(node.node_data.get()) + " does not match the arity (" +
                            std::to_string(arity) + ") of the treespec node.";
      if (namedtuple) {
        message +=
            " The `_fields` attribute may have been modified after the treespec was created.";
      }
      raise(PyExc_ValueError, message);
    }
    return fields;
  };
  auto field_label = [&](PyObject* fields) {
    return [&text, fields](Py_ssize_t k) {
      std::string name = str_of(PyTuple_GET_ITEM(fields, k));
      if (name == PyStructSequence_UnnamedField) name = "<unnamed@" + std::to_string(k) + ">";
      text += name;
      text += '=';
    };
  };
  switch (node.kind) {
    case NodeKind::Tuple:
      sequence("(", arity == 1 ? ",)" : ")");
      return;
    case NodeKind::List:
      sequence("[", "]");
      return;
    case NodeKind::Dict:
      labelled("{", dict_label(node.node_data.get()), "}");
      return;
    case NodeKind::OrderedDict:
      if (arity == 0) {
        cut();
        text += "OrderedDict()";
        return;
      }
      labelled("OrderedDict({", dict_label(node.node_data.get()), "})");
      return;
    case NodeKind::DefaultDict:
      labelled("defaultdict(" + repr_of(PyTuple_GET_ITEM(node.node_data.get(), 0)) + ", {",
               dict_label(PyTuple_GET_ITEM(node.node_data.get(), 1)), "})");
      return;
    case NodeKind::Deque: {
      PyObject* maxlen = node.node_data.get();
      std::string limit = maxlen == Py_None ? "" : "maxlen=" + repr_of(maxlen);
      if (arity == 0) {
        cut();
        text += "deque(" + limit + ")";
        return;
      }
      sequence("deque([", limit.empty() ? "])" : "], " + limit + ")");
      return;
    }
    case NodeKind::NamedTuple: {
      // `_fields` as it is now: the class may have changed since the treespec was made.
      Ref fields =
          field_names(check_ref(PyObject_GetAttrString(node.node_data.get(), "_fields")), true);
      labelled(type_name(node.node_data.get()) + "(", field_label(fields.get()), ")");
      return;
    }
    case NodeKind::StructSequence: {
      Ref fields = field_names(structseq_fields(node.node_data.get()), false);
      std::string name = reinterpret_cast<PyTypeObject*>(node.node_data.get())->tp_name;
      labelled(name + "(", field_label(fields.get()), ")");
      return;
    }
    case NodeKind::Custom: {
      std::string open = "CustomTreeNode(" + type_name(node.custom->type) + "[";
      if (node.node_data) open += repr_of(node.node_data.get());
      sequence(open + "], [", "])");
      return;
    }
    default:
      raise(PyExc_SystemError, "unsupported node kind");
  }
}

}  // namespace

std::string TreeSpec::repr() const {
  root();  // raises if uninitialized
  ReentryGuard guard(reprs_running, this);
  if (!guard.entered()) return "...";

  // First the fixed text of every node, in treespec order (so the repr() of keys and metadata
  // runs children first, as in optree), then the text itself, root first, walking with an
  // explicit stack: time and stack space stay linear in the number of nodes, whatever the depth.
  std::string text;
  std::vector<size_t> cuts;
  std::vector<size_t> first_piece(nodes_.size());
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const Node& node = nodes_[i];
    if (node.kind == NodeKind::Leaf || node.kind == NodeKind::None) continue;
    first_piece[i] = cuts.size();
    append_node_pieces(node, text, cuts);
  }
  cuts.push_back(text.size());

  std::string out = "PyTreeSpec(";
  out.reserve(text.size() + 2 * nodes_.size() + 48);
  auto piece = [&](Py_ssize_t index, Py_ssize_t k) {
    size_t p = first_piece[static_cast<size_t>(index)] + static_cast<size_t>(k);
    out.append(text, cuts[p], cuts[p + 1] - cuts[p]);
  };
  struct Frame {
    Py_ssize_t index;
    Py_ssize_t next;  // the child to write next
    size_t roots;     // where its children's roots start in `roots`
  };
  std::vector<Frame> frames;
  std::vector<Py_ssize_t> roots;
  // Writes the node's text up to its first child, and pushes its frame if it has children.
  auto open = [&](Py_ssize_t index) {
    const Node& node = nodes_[static_cast<size_t>(index)];
    if (node.kind == NodeKind::Leaf) {
      out += '*';
      return;
    }
    if (node.kind == NodeKind::None) {
      out += "None";
      return;
    }
    piece(index, 0);
    if (node.arity == 0) return;
    size_t base = roots.size();
    roots.resize(base + static_cast<size_t>(node.arity));
    Py_ssize_t position = index - 1;
    for (Py_ssize_t i = node.arity - 1; i >= 0; --i) {
      roots[base + static_cast<size_t>(i)] = position;
      position -= nodes_[static_cast<size_t>(position)].num_nodes;
    }
    frames.push_back({index, 0, base});
  };
  open(num_nodes() - 1);
  while (!frames.empty()) {
    Frame& frame = frames.back();
    Py_ssize_t arity = nodes_[static_cast<size_t>(frame.index)].arity;
    if (frame.next == arity) {
      piece(frame.index, arity);
      roots.resize(frame.roots);
      frames.pop_back();
      continue;
    }
    if (frame.next > 0) piece(frame.index, frame.next);
    Py_ssize_t child = roots[frame.roots + static_cast<size_t>(frame.next++)];
    open(child);  // may push a frame: `frame` is not used after this
  }
  if (none_is_leaf_) out += ", NoneIsLeaf";
  if (!ns_.empty()) out += ", namespace=" + namespace_repr(ns_);
  return out + ")";
}

}  // namespace optree
