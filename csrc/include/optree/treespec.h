// PyTreeSpec: its storage and the operations the bindings call. Nodes are stored in post-order:
// a node's children come right before it, so each subtree is one contiguous range. What the
// .cpp files of the core share beyond this is in csrc/internal.h.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "optree/common.h"
#include "optree/registry.h"

namespace optree {

struct Node {
  // User-provided, so that a value-initialized Node (emplace_back()) is not zero-filled first.
  Node() noexcept {}

  NodeKind kind = NodeKind::Leaf;
  Py_ssize_t arity = 0;
  // Dict kinds: list of keys in treespec order. NamedTuple / StructSequence: the type.
  // Deque: maxlen (int or None). DefaultDict: (default_factory, keys). Custom: the metadata.
  Ref node_data;
  // Custom: tuple of entries returned by the flatten function, or null.
  Ref node_entries;
  // Custom: the registration that made the node.
  RegistrationPtr custom;
  // Dict and DefaultDict: keys in the original insertion order, when it differs from node_data.
  Ref original_keys;
  Py_ssize_t num_leaves = 0;
  Py_ssize_t num_nodes = 0;
};

// Per-call flatten options.
struct FlattenOptions {
  // Borrowed for the call; null or None means no predicate. An object that keeps the options
  // past the call (LeafIterator) owns the predicate itself.
  PyObject* leaf_predicate = nullptr;
  bool none_is_leaf = false;
  std::string ns;
  // Whether dicts flatten in insertion order; unset: as the registry says at each node.
  std::optional<bool> dict_insertion_ordered;
};

class TreeSpec;
// Callback of transform(): fills `output` from `input`; returns -1 with a Python error set.
using SpecCallback = int (*)(void* context, const TreeSpec& input, TreeSpec* output);

class TreeSpec {
 public:
  // The nodes in post-order; read-only outside the core (csrc/treespec_access.h writes them).
  const std::vector<Node>& nodes() const noexcept { return nodes_; }
  bool none_is_leaf() const noexcept { return none_is_leaf_; }
  const std::string& ns() const noexcept { return ns_; }
  bool initialized() const noexcept { return !nodes_.empty(); }
  static uint64_t packed_word(NodeKind kind, Py_ssize_t arity) noexcept {
    return static_cast<uint64_t>(kind) | (static_cast<uint64_t>(arity) << 8);
  }
  // Fills `shape` with the packed word of each of `nodes` (see packed_shape_).
  static void pack_shape(const std::vector<Node>& nodes, std::vector<uint64_t>& shape);

  // Raises for a treespec that was never initialized (made by PyTreeSpec.__new__).
  const Node& root() const {
    if (nodes_.empty()) raise(PyExc_ValueError, "The PyTreeSpec is not initialized.");
    return nodes_.back();
  }
  Py_ssize_t num_leaves() const { return nodes_.empty() ? 0 : nodes_.back().num_leaves; }
  Py_ssize_t num_nodes() const { return static_cast<Py_ssize_t>(nodes_.size()); }

  // Construction. Leaves (and paths) are collected only when asked for.
  static TreeSpec flatten(PyObject* tree, const FlattenOptions& options, Ref* leaves_out,
                          Ref* paths_out = nullptr);
  static TreeSpec make_leaf(bool none_is_leaf);
  static TreeSpec make_none(bool none_is_leaf);
  // A treespec whose root is the node of `collection`, with `children` as its subtrees.
  // `collection` must be a container; children are matched to it in flatten order.
  static TreeSpec from_collection(PyObject* collection,
                                  const std::vector<const TreeSpec*>& children,
                                  const FlattenOptions& options);
  // Flattens one level of `collection` and returns the children in flatten order (for
  // from_collection); returns std::nullopt if it is a leaf.
  static std::optional<std::vector<Ref>> collection_children(PyObject* collection,
                                                             const FlattenOptions& options);
  static TreeSpec from_pickle_state(PyObject* state);

  // Rebuilding and matching.
  Ref unflatten(PyObject* leaves) const;
  // Makes the leaves of a rebuild one at a time: a new reference, or null with no exception set
  // once there are no more, or null with an exception set (StopIteration, too, means no more).
  using LeafProducer = PyObject* (*)(void* context);
  // Rebuilds from the leaves `next` makes, read as unflatten() reads an iterator (as optree's
  // pybind11 iterator does): the first when the first leaf is reached, the next as soon as a
  // leaf takes the current one (so the containers are built interleaved with the calls), and
  // once more before a leaf or the end when the last read made none.
  Ref unflatten(LeafProducer next, void* context) const;
  Ref flatten_up_to(PyObject* tree) const;
  // The same subtrees, subtree i as a new reference at out[i * stride] (num_leaves() of them);
  // on error, the slots it filled are released and set to null again.
  void flatten_up_to(PyObject* tree, PyObject** out, Py_ssize_t stride) const;
  TreeSpec compose(const TreeSpec& inner) const;

  // Structure queries.
  std::vector<TreeSpec> children() const;
  TreeSpec child(Py_ssize_t index) const;
  Ref entries() const;
  Ref entry(Py_ssize_t index) const;
  Ref paths() const;
  bool is_leaf(bool strict) const;
  bool is_prefix(const TreeSpec& other, bool strict) const;
  PyObject* type_object() const;  // borrowed; None for leaves
  Py_ssize_t num_children() const { return nodes_.empty() ? 0 : nodes_.back().arity; }
  int root_kind() const { return static_cast<int>(root().kind); }

  // Traversals (traversal.cpp).
  // Rebuilds from leaves like unflatten, mapping leaves through f_leaf and rebuilt nodes
  // through f_node. Either callable may be null.
  Ref traverse(PyObject* leaves, PyObject* f_node, PyObject* f_leaf) const;
  // As traverse(), but calls f_node(type, metadata, children) instead of rebuilding a node
  // (and rebuilds it when f_node is null).
  Ref walk(PyObject* leaves, PyObject* f_node, PyObject* f_leaf) const;
  bool is_one_level() const;
  TreeSpec one_level() const;  // root with leaf children; the root must not be a leaf
  TreeSpec transform(SpecCallback f_node, void* node_context, SpecCallback f_leaf,
                     void* leaf_context) const;
  TreeSpec broadcast_to_common_suffix(const TreeSpec& other) const;
  // One accessor_type(tuple of entries) per leaf; entry_types holds the entry class of each
  // builtin kind by kind index, and kinds the PyTreeKind members.
  Ref accessors(PyObject* entry_types, PyObject* accessor_type, PyObject* kinds) const;

  // Comparison, hashing, text, pickling.
  bool equals(const TreeSpec& other) const;
  Py_hash_t hash() const;
  std::string repr() const;
  Ref pickle_state() const;

  // Raises ValueError ("PyTreeSpecs cannot be <action>: ...") if, looked up in namespace `ns`
  // (with the global fallback), some custom node's type no longer resolves to the registration
  // the node holds: adopting that namespace would rebind the node.
  void check_resolves_in(const std::string& ns, const char* action) const;

  // Helpers shared by the algorithms.
  // A treespec with no nodes and the settings of both, which must agree (compose, broadcast).
  TreeSpec empty_combination(const TreeSpec& other) const;
  // Index of each child's root, in order, for the node at `index`.
  std::vector<Py_ssize_t> child_roots(Py_ssize_t index) const;
  TreeSpec subtree(Py_ssize_t root_index) const;

 private:
  // How the core's constructions (flatten, unpickling, transfer, the GC's clear) fill the
  // storage; defined in csrc/internal.h, which the bindings do not see.
  friend struct TreeSpecAccess;

  std::vector<Node> nodes_;
  bool none_is_leaf_ = false;
  std::string ns_;
  // Each node's kind and arity as one word (pack_shape()), so that equals() compares the
  // structure of two treespecs with one memcmp instead of a walk over two arrays of nodes.
  // Unpickling fills it, and flatten does for all but tiny trees (see Flattener::run); other
  // constructions leave it empty. equals() uses it only when both sides have one word per
  // node: code that edits the nodes of a flattened treespec in place must clear it.
  std::vector<uint64_t> packed_shape_;
};

// Whether `obj` is a leaf under `options` (one node classified as flatten would).
bool is_leaf_object(PyObject* obj, const FlattenOptions& options);
// The leaves of a tree, as flatten finds them, without building its treespec.
Ref flatten_leaves(PyObject* tree, const FlattenOptions& options);

}  // namespace optree
