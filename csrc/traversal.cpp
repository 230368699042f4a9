// Traversals over a treespec: traverse / walk, transform, one-level views, broadcasting and
// accessors.
#include <algorithm>
#include <iterator>
#include <utility>

#include "internal.h"
#include "optree/text.h"
#include "optree/treespec.h"

namespace optree {

namespace {

// The metadata walk() hands to f_node. The key list of a dict kind is the treespec's own and
// the treespec reads it unchecked later: f_node gets a copy it may change at will.
Ref node_metadata(const Node& node) {
  switch (node.kind) {
    case NodeKind::Tuple:
    case NodeKind::List:
    case NodeKind::None:
      return Ref::borrow(Py_None);
    case NodeKind::Dict:
    case NodeKind::OrderedDict: {
      PyObject* keys = node.node_data.get();
      return check_ref(PyList_GetSlice(keys, 0, PyList_GET_SIZE(keys)));
    }
    case NodeKind::DefaultDict: {
      PyObject* keys = PyTuple_GET_ITEM(node.node_data.get(), 1);
      Ref copy = check_ref(PyList_GetSlice(keys, 0, PyList_GET_SIZE(keys)));
      return check_ref(PyTuple_Pack(2, PyTuple_GET_ITEM(node.node_data.get(), 0), copy.get()));
    }
    default:
      return Ref::borrow(node.node_data ? node.node_data.get() : Py_None);
  }
}

Ref node_type(const TreeSpec& spec, Py_ssize_t index, LazyBuiltins& builtins) {
  return Ref::borrow(node_type_object(spec.nodes()[static_cast<size_t>(index)], builtins));
}

// Recomputes counts of a post-order node list in place.
void recount(std::vector<Node>& nodes) {
  std::vector<size_t> roots;
  for (size_t i = 0; i < nodes.size(); ++i) {
    Node& node = nodes[i];
    SubtreeSize size = adopt_children(nodes, roots, i, node.kind, node.arity);
    node.num_leaves = size.leaves;
    node.num_nodes = size.nodes;
  }
}

std::string kind_name(const TreeSpec& spec, Py_ssize_t index) {
  LazyBuiltins builtins;
  Ref type = node_type(spec, index, builtins);
  if (type.get() == Py_None) return "leaf";
  return type_name(type.get());
}

// How optree names a node's type in the errors of broadcasting: the repr of a namedtuple,
// PyStructSequence or custom class, the name of a builtin one.
std::string broadcast_type_name(const TreeSpec& spec, Py_ssize_t index) {
  NodeKind kind = spec.nodes()[static_cast<size_t>(index)].kind;
  if (kind != NodeKind::Custom && kind != NodeKind::NamedTuple &&
      kind != NodeKind::StructSequence) {
    return kind_name(spec, index);
  }
  LazyBuiltins builtins;
  return repr_of(node_type(spec, index, builtins).get());
}

// Raises unless nodes `mine` of `spec` and `theirs` of `other` (both non-leaves) can be
// merged, with optree's messages, checked in its order. Kept out of the recursion so its frame
// (error messages) is not on the stack per level.
[[gnu::noinline]] void check_broadcastable(const TreeSpec& spec, Py_ssize_t mine,
                                           const TreeSpec& other, Py_ssize_t theirs) {
  const Node& a = spec.nodes()[static_cast<size_t>(mine)];
  const Node& b = other.nodes()[static_cast<size_t>(theirs)];
  bool a_dict = is_dict_kind(a.kind);
  if (a.kind != b.kind && !(a_dict && is_dict_kind(b.kind))) {
    raise(PyExc_ValueError, "PyTreeSpecs have incompatible node types; expected type: " +
                                broadcast_type_name(spec, mine) +
                                ", got: " + broadcast_type_name(other, theirs) + ".");
  }
  if (a_dict) {
    if (auto mismatch = dict_key_mismatch(dict_keys_of(a), dict_keys_of(b))) {
      raise(PyExc_ValueError, *mismatch + ".");
    }
    return;
  }
  // `what` names the node kind; null: the node's class (tuple, list, deque), named only when
  // needed.
  auto check_arity = [&](const char* what) {
    if (a.arity != b.arity) [[unlikely]] {
      raise(PyExc_ValueError, (what != nullptr ? std::string(what) : kind_name(spec, mine)) +
                                  " arity mismatch; expected: " + std::to_string(a.arity) +
                                  ", got: " + std::to_string(b.arity) + ".");
    }
  };
  auto check_type = [&](const char* what) {
    LazyBuiltins builtins;
    Ref a_type = node_type(spec, mine, builtins);
    Ref b_type = node_type(other, theirs, builtins);
    if (a_type.get() != b_type.get()) {
      raise(PyExc_ValueError, std::string(what) +
                                  " type mismatch; expected type: " + repr_of(a_type.get()) +
                                  ", got type: " + repr_of(b_type.get()) + ".");
    }
  };
  switch (a.kind) {
    case NodeKind::Custom:
      check_type("Custom node");
      check_arity("Custom type");
      if (!check_int(PyObject_RichCompareBool(a.node_data.get(), b.node_data.get(), Py_EQ))) {
        raise(PyExc_ValueError,
              "Mismatch custom node data; expected: " + repr_of(a.node_data.get()) +
                  ", got: " + repr_of(b.node_data.get()) + ".");
      }
      break;
    case NodeKind::NamedTuple:
      check_arity("namedtuple");
      check_type("namedtuple");
      break;
    case NodeKind::StructSequence:
      check_arity("PyStructSequence");
      check_type("PyStructSequence");
      break;
    default:  // tuple, list, deque (whatever its maxlen), None
      check_arity(nullptr);
      break;
  }
}

}  // namespace

namespace {

// The rebuild that traverse() and walk() share: leaves from `leaves` through f_leaf (if not
// null), and each node made by build(index, node, children) from its built children.
template <class Build>
Ref rebuild(const TreeSpec& spec, PyObject* leaves, PyObject* f_leaf, Build&& build) {
  spec.root();  // raises if uninitialized

  Ref iterator = check_ref(PyObject_GetIter(leaves));
  std::vector<Ref> stack;
  std::vector<PyObject*> children;
  for (size_t index = 0; index < spec.nodes().size(); ++index) {
    const Node& node = spec.nodes()[index];
    if (node.kind == NodeKind::Leaf) {
      Ref leaf = Ref::steal(PyIter_Next(iterator.get()));
      if (!leaf) {
        if (PyErr_Occurred()) throw_python_error();
        raise(PyExc_ValueError, "Too few leaves for PyTreeSpec.");
      }
      if (f_leaf != nullptr) leaf = check_ref(PyObject_CallOneArg(f_leaf, leaf.get()));
      stack.push_back(std::move(leaf));
      continue;
    }
    size_t first = stack.size() - static_cast<size_t>(node.arity);
    children.clear();
    for (size_t i = first; i < stack.size(); ++i) children.push_back(stack[i].get());
    Ref built = build(static_cast<Py_ssize_t>(index), node, children.data());
    stack.resize(first);
    stack.push_back(std::move(built));
  }
  Ref extra = Ref::steal(PyIter_Next(iterator.get()));
  if (extra) raise(PyExc_ValueError, "Too many leaves for PyTreeSpec.");
  if (PyErr_Occurred()) throw_python_error();
  return std::move(stack.back());
}

}  // namespace

Ref TreeSpec::traverse(PyObject* leaves, PyObject* f_node, PyObject* f_leaf) const {
  LazyBuiltins builtins;
  return rebuild(*this, leaves, f_leaf,
                 [&](Py_ssize_t, const Node& node, PyObject* const* children) {
                   Ref built = make_node(node, children, builtins);
                   if (f_node != nullptr)
                     built = check_ref(PyObject_CallOneArg(f_node, built.get()));
                   return built;
                 });
}

Ref TreeSpec::walk(PyObject* leaves, PyObject* f_node, PyObject* f_leaf) const {
  if (f_node == nullptr) return traverse(leaves, nullptr, f_leaf);
  LazyBuiltins builtins;
  return rebuild(*this, leaves, f_leaf,
                 [&](Py_ssize_t index, const Node& node, PyObject* const* children) {
                   Ref child_tuple = tuple_of(children, node.arity);
                   Ref type = node_type(*this, index, builtins);
                   Ref metadata = node_metadata(node);
                   return check_ref(PyObject_CallFunctionObjArgs(f_node, type.get(), metadata.get(),
                                                                 child_tuple.get(), nullptr));
                 });
}

bool TreeSpec::is_one_level() const {
  const Node& top = root();
  return top.kind != NodeKind::Leaf && top.num_nodes == top.arity + 1;
}

TreeSpec TreeSpec::one_level() const {
  TreeSpec spec;
  spec.none_is_leaf_ = none_is_leaf_;
  spec.ns_ = ns_;
  const Node& top = root();
  for (Py_ssize_t i = 0; i < top.arity; ++i)
    spec.nodes_.push_back(make_leaf(none_is_leaf_).nodes_[0]);
  Node copy = top;
  copy.num_leaves = top.arity;
  copy.num_nodes = top.arity + 1;
  spec.nodes_.push_back(std::move(copy));
  return spec;
}

namespace {

// The one-level treespec of `node` (a leaf for a leaf) with the settings of `spec`: what
// transform() hands its functions.
TreeSpec one_level_of(const TreeSpec& spec, const Node& node) {
  TreeSpec out;
  TreeSpecAccess::none_is_leaf(out) = spec.none_is_leaf();
  TreeSpecAccess::ns(out) = spec.ns();
  std::vector<Node>& nodes = TreeSpecAccess::nodes(out);
  nodes.resize(static_cast<size_t>(node.arity) + 1);
  for (Py_ssize_t i = 0; i < node.arity; ++i) {
    nodes[static_cast<size_t>(i)].num_leaves = 1;
    nodes[static_cast<size_t>(i)].num_nodes = 1;
  }
  Node& top = nodes.back();
  top = node;
  top.num_leaves = node.kind == NodeKind::Leaf ? 1 : node.arity;
  top.num_nodes = node.arity + 1;
  return out;
}

[[noreturn, gnu::noinline]] void bad_transform_output(const std::string& what,
                                                      const TreeSpec& output,
                                                      const TreeSpec& input) {
  raise(PyExc_ValueError, "Expected the PyTreeSpec transform function returns " + what + ", got " +
                              output.repr() + " (input: " + input.repr() + ").");
}

}  // namespace

TreeSpec TreeSpec::transform(SpecCallback f_node, void* node_context, SpecCallback f_leaf,
                             void* leaf_context) const {
  root();  // raises if uninitialized
  if (f_node == nullptr && f_leaf == nullptr) return *this;

  TreeSpec result;
  result.none_is_leaf_ = none_is_leaf_;
  result.ns_ = ns_;
  result.nodes_.reserve(nodes_.size());
  // (leaves, nodes) of each transformed subtree whose parent is still to come.
  std::vector<std::pair<Py_ssize_t, Py_ssize_t>> pending;
  for (const Node& node : nodes_) {
    bool leaf = node.kind == NodeKind::Leaf;
    SpecCallback function = leaf ? f_leaf : f_node;
    TreeSpec output;
    if (function == nullptr) {
      output.nodes_.push_back(node);  // its counts are set below
    } else {
      TreeSpec input = one_level_of(*this, node);
      if (function(leaf ? leaf_context : node_context, input, &output) < 0) throw_python_error();
      output.root();  // raises if the function returned an uninitialized treespec
      if (output.none_is_leaf_ != none_is_leaf_) {
        bad_transform_output(std::string("a PyTreeSpec with the same value of `none_is_leaf=") +
                                 (none_is_leaf_ ? "True" : "False") + "` as the input",
                             output, input);
      }
      if (!output.ns_.empty()) {
        if (result.ns_.empty()) {
          result.ns_ = output.ns_;
        } else if (output.ns_ != result.ns_) {
          raise(PyExc_ValueError,
                "Expected the PyTreeSpec transform function returns a PyTreeSpec with namespace " +
                    namespace_repr(result.ns_) + ", got " + namespace_repr(output.ns_) + ".");
        }
      }
      if (!leaf) {
        if (output.num_leaves() != node.arity) {
          bad_transform_output("a PyTreeSpec with the same number of arity as the input (" +
                                   std::to_string(node.arity) + ")",
                               output, input);
        }
        if (output.num_nodes() != node.arity + 1) {
          bad_transform_output("a one-level PyTreeSpec as the input", output, input);
        }
      }
    }
    if (leaf) {
      // A leaf becomes the whole tree the function returned.
      pending.emplace_back(output.num_leaves(), output.num_nodes());
      result.nodes_.insert(result.nodes_.end(), std::make_move_iterator(output.nodes_.begin()),
                           std::make_move_iterator(output.nodes_.end()));
      continue;
    }
    // A node becomes the root of the one-level output, over its transformed children.
    Node top = std::move(output.nodes_.back());
    top.num_leaves = 0;
    top.num_nodes = 1;
    for (size_t i = pending.size() - static_cast<size_t>(node.arity); i < pending.size(); ++i) {
      top.num_leaves += pending[i].first;
      top.num_nodes += pending[i].second;
    }
    pending.resize(pending.size() - static_cast<size_t>(node.arity));
    pending.emplace_back(top.num_leaves, top.num_nodes);
    result.nodes_.push_back(std::move(top));
  }
  if (!result.ns_.empty()) result.check_resolves_in(result.ns_, "transformed");
  return result;
}

TreeSpec TreeSpec::broadcast_to_common_suffix(const TreeSpec& other) const {
  TreeSpec result = empty_combination(other);
  check_namespace_merge(result, *this, other);
  // Depth first, last children first, as optree walks (so it reports the same mismatch first);
  // the nodes come out in reverse treespec order.
  struct Pair {
    Py_ssize_t mine;
    Py_ssize_t theirs;
    Py_ssize_t depth;
  };
  std::vector<Pair> agenda;
  agenda.push_back({num_nodes() - 1, other.num_nodes() - 1, 0});
  std::vector<Node>& out = result.nodes_;
  out.reserve(static_cast<size_t>(std::max(num_nodes(), other.num_nodes())));
  // A whole subtree of `spec`, reversed.
  auto copy_subtree = [&out](const TreeSpec& spec, Py_ssize_t root) {
    Py_ssize_t first = root - spec.nodes_[static_cast<size_t>(root)].num_nodes + 1;
    for (Py_ssize_t i = root; i >= first; --i) out.push_back(spec.nodes_[static_cast<size_t>(i)]);
  };
  while (!agenda.empty()) {
    Pair pair = agenda.back();
    agenda.pop_back();
    if (pair.depth > kMaxRecursionDepth) [[unlikely]] {
      raise(PyExc_RecursionError,
            "Maximum recursion depth exceeded during broadcasting the treespecs.");
    }
    const Node& a = nodes_[static_cast<size_t>(pair.mine)];
    const Node& b = other.nodes_[static_cast<size_t>(pair.theirs)];
    if (a.kind == NodeKind::Leaf) {
      copy_subtree(other, pair.theirs);
      continue;
    }
    if (b.kind == NodeKind::Leaf) {
      copy_subtree(*this, pair.mine);
      continue;
    }
    check_broadcastable(*this, pair.mine, other, pair.theirs);
    out.push_back(a);
    std::vector<Py_ssize_t> my_roots = child_roots(pair.mine);
    std::vector<Py_ssize_t> their_roots = other.child_roots(pair.theirs);
    std::vector<size_t> order = matching_children(a, b);
    for (size_t i = 0; i < my_roots.size(); ++i) {
      agenda.push_back({my_roots[i], their_roots[order[i]], pair.depth + 1});
    }
  }
  std::reverse(out.begin(), out.end());
  recount(out);
  return result;
}

Ref TreeSpec::accessors(PyObject* entry_types, PyObject* accessor_type, PyObject* kinds) const {
  LazyBuiltins builtins;
  auto make_entry = [&](Py_ssize_t index, Py_ssize_t i) {
    const Node& node = nodes_[static_cast<size_t>(index)];
    Ref entry = node_entry(node, i);
    PyObject* entry_type = node.kind == NodeKind::Custom
                               ? node.custom->path_entry_type
                               : PyTuple_GET_ITEM(entry_types, static_cast<Py_ssize_t>(node.kind));
    return check_ref(PyObject_CallFunctionObjArgs(
        entry_type, entry.get(), node_type_object(node, builtins),
        PyTuple_GET_ITEM(kinds, static_cast<Py_ssize_t>(node.kind)), nullptr));
  };
  return collect_leaf_paths(*this, make_entry, [&](Ref path) {
    return check_ref(PyObject_CallOneArg(accessor_type, path.get()));
  });
}

}  // namespace optree
