// PyTreeSpec storage and every algorithm over it. Nodes are stored in post-order: a node's
// children come right before it, so each subtree is one contiguous range.
#pragma once

#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "optree/common.h"
#include "optree/introspection.h"
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
  std::vector<Node> nodes;
  bool none_is_leaf = false;
  std::string ns;
  // Each node's kind and arity as one word (pack_shape()), so that equals() compares the
  // structure of two treespecs with one memcmp instead of a walk over two arrays of nodes.
  // Unpickling fills it, and flatten does for all but tiny trees (see Flattener::run); other
  // constructions leave it empty. equals() uses it only when both sides have one word per
  // node: code that edits `nodes` of a flattened treespec in place must clear it.
  std::vector<uint64_t> packed_shape;
  void pack_shape() { pack_shape(nodes, packed_shape); }
  static void pack_shape(const std::vector<Node>& nodes, std::vector<uint64_t>& shape);
  static uint64_t packed_word(NodeKind kind, Py_ssize_t arity) noexcept {
    return static_cast<uint64_t>(kind) | (static_cast<uint64_t>(arity) << 8);
  }

  // Raises for a treespec that was never initialized (made by PyTreeSpec.__new__).
  const Node& root() const {
    if (nodes.empty()) raise(PyExc_ValueError, "The PyTreeSpec is not initialized.");
    return nodes.back();
  }
  Py_ssize_t num_leaves() const { return nodes.empty() ? 0 : nodes.back().num_leaves; }
  Py_ssize_t num_nodes() const { return static_cast<Py_ssize_t>(nodes.size()); }

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
  Py_ssize_t num_children() const { return nodes.empty() ? 0 : nodes.back().arity; }
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
};

// Single-node classification shared by flatten, is_leaf and the one-level helpers.
struct NodeInfo {
  NodeKind kind;
  const RegistrationPtr* custom = nullptr;
};
bool is_leaf_object(PyObject* obj, const FlattenOptions& options);
// The leaves of a tree, as flatten finds them, without building its treespec.
Ref flatten_leaves(PyObject* tree, const FlattenOptions& options);
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
    const Node& node = spec.nodes[static_cast<size_t>(index)];
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

// A mutex whose uncontended lock and unlock are one atomic instruction each (a leaf iterator
// takes it once per leaf); a contended lock() sleeps on the atomic (C++20 wait / notify).
class LightMutex {
 public:
  bool try_lock() noexcept {
    int expected = 0;
    return state_.compare_exchange_strong(expected, 1, std::memory_order_acquire);
  }
  void lock() noexcept {
    if (!try_lock()) lock_contended();
  }
  void unlock() noexcept {
    if (state_.exchange(0, std::memory_order_release) == 2) [[unlikely]]
      wake_one();
  }

 private:
  [[gnu::noinline]] void lock_contended() noexcept {
    // 2: locked, and someone may be waiting for it.
    while (state_.exchange(2, std::memory_order_acquire) != 0) {
      state_.wait(2, std::memory_order_relaxed);
    }
  }
  [[gnu::noinline]] void wake_one() noexcept { state_.notify_one(); }

  std::atomic<int> state_{0};  // 0: free, 1: locked, 2: locked with waiters
};

// Lazy leaf iterator over a tree; each step looks the registry up afresh, except for the dict
// ordering, which stays the one in force at creation. It owns the tree and the leaf predicate.
// Threads may share one: next() calls run one at a time, each thread getting its leaves in
// order; a next() from inside one (the predicate, a flatten function) raises RuntimeError.
class LeafIterator {
 public:
  LeafIterator(PyObject* tree, const FlattenOptions& options);
  Ref next();  // null with no exception set when exhausted

  // Cyclic GC (gc.cpp): report every object held; drop them all (the iterator is then
  // exhausted). Both do nothing while a next() is under way, which holds a reference to the
  // iterator anyway: that thread may be paused mid-step, or be the one collecting.
  int traverse(visitproc visit, void* arg) const noexcept;
  void clear() noexcept;

 private:
  Ref next_locked();
  // Waits for another thread's next() to finish; raises if this thread is the one inside.
  [[gnu::noinline]] void wait_for_turn(PyThreadState* thread);
  // The lock, unless a next() holds it.
  std::unique_lock<LightMutex> try_lock_idle() const noexcept;

  struct Frame {
    std::vector<Ref> children;  // of the container being walked; null once visited
    size_t position = 0;
  };
  std::vector<Frame> stack_;
  Ref root_;
  bool root_done_ = false;
  Ref predicate_;           // options_.leaf_predicate points at it
  FlattenOptions options_;  // dict_insertion_ordered is always set
  mutable LightMutex mutex_;
  std::atomic<PyThreadState*> running_{nullptr};  // the thread inside next(), if any
};

}  // namespace optree
