// What the .cpp files of the core share and the bindings do not see (they include only
// csrc/include/): write access to a treespec's storage, node-level helpers of the algorithms.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "optree/common.h"
#include "optree/registry.h"
#include "optree/treespec.h"

namespace optree {

// How the core's constructions (flatten, unpickling, transfer, transform, the GC's clear) fill a
// treespec's storage; everything else reads it through TreeSpec's public members.
struct TreeSpecAccess {
  static std::vector<Node>& nodes(TreeSpec& spec) noexcept { return spec.nodes_; }
  static bool& none_is_leaf(TreeSpec& spec) noexcept { return spec.none_is_leaf_; }
  static std::string& ns(TreeSpec& spec) noexcept { return spec.ns_; }
};

// Single-node classification shared by flatten, is_leaf and the one-level helpers.
struct NodeInfo {
  NodeKind kind;
  const RegistrationPtr* custom = nullptr;
};
// Dict keys in flatten order: natural order when they compare, else by (type, key), else as
// given. Returns a new list.
Ref sorted_keys(PyObject* keys_in_order);
// optree's "dictionary key mismatch; ..." text when the two key lists differ as sets.
std::optional<std::string> dict_key_mismatch(PyObject* expected_keys, PyObject* got_keys);
// A merge of `a` and `b` (compose, broadcast) adopts the namespace of one side as `result.ns`:
// raises if the custom nodes of the other side would resolve to other registrations there.
void check_namespace_merge(const TreeSpec& result, const TreeSpec& a, const TreeSpec& b);
// For two compatible nodes, the index in `b` of each child of `a` (dict kinds match by key).
std::vector<size_t> matching_children(const Node& a, const Node& b);
bool is_dict_kind(NodeKind kind);
// Whether a dict-kind node keeps its keys sorted (when they sort), with their insertion order
// apart in original_keys when it differs; an OrderedDict's keys keep their own order.
inline bool sorts_dict_keys(NodeKind kind) {
  return kind == NodeKind::Dict || kind == NodeKind::DefaultDict || kind == NodeKind::FrozenDict;
}
PyObject* dict_keys_of(const Node& node);
// Post-order bookkeeping while nodes are appended: `roots` holds the indices (in `nodes`) of the
// subtrees whose parent has not come yet. The node at `index` (of `kind` and `arity`) takes its
// children, the last `arity` roots, and becomes a root; returns the leaves and nodes of its
// subtree. The caller makes sure there are that many roots.
struct SubtreeSize {
  Py_ssize_t leaves;
  Py_ssize_t nodes;
};
inline SubtreeSize adopt_children(const std::vector<Node>& nodes, std::vector<size_t>& roots,
                                  size_t index, NodeKind kind, Py_ssize_t arity) {
  SubtreeSize size{kind == NodeKind::Leaf ? 1 : 0, 1};
  size_t first = roots.size() - static_cast<size_t>(arity);
  for (size_t c = first; c < roots.size(); ++c) {
    size.leaves += nodes[roots[c]].num_leaves;
    size.nodes += nodes[roots[c]].num_nodes;
  }
  roots.resize(first);
  roots.push_back(index);
  return size;
}
// What is wrong with `maxlen` (not None) as the maxlen of a loaded (unpickled or decoded) deque
// node of `arity` children. Pickles take what collections.deque takes (an int subclass too);
// `exact_int` asks for an exact int.
enum class MaxlenProblem { Fits, NotAnInt, OutOfRange, BelowArity };
inline MaxlenProblem deque_maxlen_problem(PyObject* maxlen, Py_ssize_t arity, bool exact_int) {
  if (exact_int ? !PyLong_CheckExact(maxlen) : !PyLong_Check(maxlen))
    return MaxlenProblem::NotAnInt;
  Py_ssize_t value = PyLong_AsSsize_t(maxlen);
  if (value == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    return MaxlenProblem::OutOfRange;
  }
  return value < arity ? MaxlenProblem::BelowArity : MaxlenProblem::Fits;
}
// Borrows the first `n` items of `tuple` into `children`.
inline void append_items(std::vector<Ref>& children, PyObject* tuple, Py_ssize_t n) {
  children.reserve(children.size() + static_cast<size_t>(n));
  for (Py_ssize_t i = 0; i < n; ++i) children.push_back(Ref::borrow(PyTuple_GET_ITEM(tuple, i)));
}
// Builds the container of a non-leaf node from its children (arity of them).
Ref make_node(const Node& node, PyObject* const* children, LazyBuiltins& builtins);
// The entry (path key) of a node's child: dict key, custom entry, or position.
Ref node_entry(const Node& node, Py_ssize_t index);
// The entries of a node's children, as a new list.
Ref node_entries(const Node& node);
// The Python type of a node (borrowed); None for a leaf.
PyObject* node_type_object(const Node& node, LazyBuiltins& builtins);
// Fills node metadata and the children of a non-leaf object, in flatten order.
// Custom flatten functions run here; `view` is re-pinned after them. `info.custom` must not
// be used after this returns.
void expand_node(PyObject* obj, const NodeInfo& info, RegistryView& view,
                 const FlattenOptions& options, Node& node, std::vector<Ref>& children,
                 bool& uses_namespace);

// One result per leaf of `spec`, from the leaf's path, as a new list in leaf order (paths(),
// accessors()). The post-order array read backwards is a pre-order walk that visits the last
// child first, the order in which optree makes the entries and the results: make_entry(index,
// i) gives the path entry below the node at `index` for its child i, make_leaf(path) the result
// for a leaf whose path is the tuple `path` (both Refs).
template <class MakeEntry, class MakeLeaf>
Ref collect_leaf_paths(const TreeSpec& spec, MakeEntry&& make_entry, MakeLeaf&& make_leaf) {
  spec.root();  // raises if uninitialized
  Py_ssize_t leaves = spec.num_leaves();
  if (leaves == 0) return check_ref(PyList_New(0));
  // frames hold the ancestors of the node at hand, and prefix[d] the entry taken below the
  // ancestor at depth d.
  struct Frame {
    Py_ssize_t index;
    Py_ssize_t remaining;  // children not visited yet; the next one visited is the last of them
  };
  std::vector<Frame> frames;
  std::vector<Ref> prefix;
  std::vector<Ref> found;
  found.reserve(static_cast<size_t>(leaves));
  for (Py_ssize_t index = spec.num_nodes() - 1; index >= 0; --index) {
    while (!frames.empty() && frames.back().remaining == 0) frames.pop_back();
    if (!frames.empty()) {
      Frame& parent = frames.back();
      prefix.resize(frames.size());
      prefix.back() = make_entry(parent.index, --parent.remaining);
    }
    if (static_cast<Py_ssize_t>(frames.size()) > kMaxRecursionDepth) [[unlikely]] {
      raise(PyExc_RecursionError, "Maximum recursion depth exceeded during walking the tree.");
    }
    const Node& node = spec.nodes()[static_cast<size_t>(index)];
    if (node.kind == NodeKind::Leaf) {
      found.push_back(make_leaf(tuple_of(prefix.data(), static_cast<Py_ssize_t>(frames.size()))));
    } else if (node.arity > 0) {
      frames.push_back({index, node.arity});
    }
  }
  // Filled without allocating, so no Python code sees the list before it is complete.
  Ref result = check_ref(PyList_New(static_cast<Py_ssize_t>(found.size())));
  for (size_t i = 0; i < found.size(); ++i) {
    PyList_SET_ITEM(result.get(), static_cast<Py_ssize_t>(found.size() - 1 - i),
                    found[i].release());
  }
  return result;
}

}  // namespace optree
