// Traversals over a treespec: traverse / walk, transform, one-level views, broadcasting and
// accessors.
#include <functional>

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
  return Ref::borrow(node_type_object(spec.nodes[static_cast<size_t>(index)], builtins));
}

// Recomputes counts of a post-order node list in place.
void recount(std::vector<Node>& nodes) {
  std::vector<size_t> stack;
  for (size_t i = 0; i < nodes.size(); ++i) {
    Node& node = nodes[i];
    Py_ssize_t leaves = node.kind == NodeKind::Leaf ? 1 : 0;
    Py_ssize_t count = 1;
    for (size_t c = stack.size() - static_cast<size_t>(node.arity); c < stack.size(); ++c) {
      leaves += nodes[stack[c]].num_leaves;
      count += nodes[stack[c]].num_nodes;
    }
    node.num_leaves = leaves;
    node.num_nodes = count;
    stack.resize(stack.size() - static_cast<size_t>(node.arity));
    stack.push_back(i);
  }
}

std::string kind_name(const TreeSpec& spec, Py_ssize_t index) {
  LazyBuiltins builtins;
  Ref type = node_type(spec, index, builtins);
  if (type.get() == Py_None) return "leaf";
  return type_name(type.get());
}

// Raises unless nodes `mine` of `spec` and `theirs` of `other` (both non-leaves) can be
// merged. Kept out of the recursion so its frame (error messages) is not on the stack per level.
[[gnu::noinline]] void check_broadcastable(const TreeSpec& spec, Py_ssize_t mine,
                                           const TreeSpec& other, Py_ssize_t theirs) {
  const Node& a = spec.nodes[static_cast<size_t>(mine)];
  const Node& b = other.nodes[static_cast<size_t>(theirs)];
  bool a_dict = is_dict_kind(a.kind);
  if (a.kind != b.kind && !(a_dict && is_dict_kind(b.kind))) {
    raise(PyExc_ValueError, "PyTreeSpecs have incompatible node types; expected type: " +
                                kind_name(spec, mine) + ", got: " + kind_name(other, theirs) + ".");
  }
  if (a_dict) {
    if (auto mismatch = dict_key_mismatch(dict_keys_of(a), dict_keys_of(b))) {
      raise(PyExc_ValueError, *mismatch + ".");
    }
  } else if (a.arity != b.arity) {
    raise(PyExc_ValueError, kind_name(spec, mine) +
                                " arity mismatch; expected: " + std::to_string(a.arity) +
                                ", got: " + std::to_string(b.arity) + ".");
  } else if (a.kind == NodeKind::Custom || a.kind == NodeKind::NamedTuple ||
             a.kind == NodeKind::StructSequence || a.kind == NodeKind::Deque) {
    LazyBuiltins builtins;
    Ref a_type = node_type(spec, mine, builtins);
    Ref b_type = node_type(other, theirs, builtins);
    if (a_type.get() != b_type.get()) {
      raise(PyExc_ValueError,
            "PyTreeSpecs have incompatible node types; expected type: " + kind_name(spec, mine) +
                ", got: " + kind_name(other, theirs) + ".");
    }
    if (a.kind == NodeKind::Custom &&
        !check_int(PyObject_RichCompareBool(a.node_data.get(), b.node_data.get(), Py_EQ))) {
      raise(PyExc_ValueError, "Mismatch custom node data; expected: " + repr_of(a.node_data.get()) +
                                  ", got: " + repr_of(b.node_data.get()) + ".");
    }
  }
}

}  // namespace

Ref TreeSpec::traverse(PyObject* leaves, PyObject* f_node, PyObject* f_leaf, bool walk) const {
  root();  // raises if uninitialized

  Ref iterator = check_ref(PyObject_GetIter(leaves));
  std::vector<Ref> stack;
  LazyBuiltins builtins;
  for (size_t index = 0; index < nodes.size(); ++index) {
    const Node& node = nodes[index];
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
    std::vector<PyObject*> children;
    for (size_t i = first; i < stack.size(); ++i) children.push_back(stack[i].get());
    Ref built;
    if (walk && f_node != nullptr) {
      Ref child_tuple = check_ref(PyTuple_New(node.arity));
      for (Py_ssize_t i = 0; i < node.arity; ++i) {
        PyTuple_SET_ITEM(child_tuple.get(), i, Py_NewRef(children[static_cast<size_t>(i)]));
      }
      Ref type = node_type(*this, static_cast<Py_ssize_t>(index), builtins);
      Ref metadata = node_metadata(node);
      built = check_ref(PyObject_CallFunctionObjArgs(f_node, type.get(), metadata.get(),
                                                     child_tuple.get(), nullptr));
    } else {
      built = make_node(node, children.data(), builtins);
      if (f_node != nullptr) built = check_ref(PyObject_CallOneArg(f_node, built.get()));
    }
    stack.resize(first);
    stack.push_back(std::move(built));
  }
  Ref extra = Ref::steal(PyIter_Next(iterator.get()));
  if (extra) raise(PyExc_ValueError, "Too many leaves for PyTreeSpec.");
  if (PyErr_Occurred()) throw_python_error();
  return std::move(stack.back());
}

bool TreeSpec::is_one_level() const {
  const Node& top = root();
  return top.kind != NodeKind::Leaf && top.num_nodes == top.arity + 1;
}

TreeSpec TreeSpec::one_level() const {
  TreeSpec spec;
  spec.none_is_leaf = none_is_leaf;
  spec.ns = ns;
  const Node& top = root();
  for (Py_ssize_t i = 0; i < top.arity; ++i) spec.nodes.push_back(make_leaf(none_is_leaf).nodes[0]);
  Node copy = top;
  copy.num_leaves = top.arity;
  copy.num_nodes = top.arity + 1;
  spec.nodes.push_back(std::move(copy));
  return spec;
}

TreeSpec TreeSpec::transform(SpecCallback f_node, void* node_context, SpecCallback f_leaf,
                             void* leaf_context) const {
  root();  // raises if uninitialized

  TreeSpec result;
  result.none_is_leaf = none_is_leaf;
  result.ns = ns;
  std::vector<std::vector<Node>> stack;  // transformed subtrees
  auto check_output = [&](const TreeSpec& input, const TreeSpec& output) {
    if (output.none_is_leaf != none_is_leaf) {
      raise(PyExc_ValueError,
            std::string("Expected the PyTreeSpec transform function returns a PyTreeSpec with "
                        "the same value of `none_is_leaf=") +
                (none_is_leaf ? "True" : "False") + "` as the input, got " + output.repr() +
                " (input: " + input.repr() + ").");
    }
    if (!output.ns.empty()) {
      if (!result.ns.empty() && result.ns != output.ns) {
        raise(PyExc_ValueError,
              "Expected the PyTreeSpec transform function returns a PyTreeSpec with namespace " +
                  repr_of(unicode(result.ns).get()) + ", got " + output.repr() +
                  " (input: " + input.repr() + ").");
      }
      result.ns = output.ns;
    }
  };
  for (size_t index = 0; index < nodes.size(); ++index) {
    const Node& node = nodes[index];
    if (node.kind == NodeKind::Leaf) {
      TreeSpec input = make_leaf(none_is_leaf);
      input.ns = ns;
      if (f_leaf == nullptr) {
        stack.push_back(input.nodes);
        continue;
      }
      TreeSpec output;
      if (f_leaf(leaf_context, input, &output) < 0) throw_python_error();
      check_output(input, output);
      stack.push_back(std::move(output.nodes));
      continue;
    }
    TreeSpec input = subtree(static_cast<Py_ssize_t>(index)).one_level();
    TreeSpec output;
    if (f_node == nullptr) {
      output = input;
    } else {
      if (f_node(node_context, input, &output) < 0) throw_python_error();
      check_output(input, output);
      if (output.num_leaves() != node.arity) {
        raise(PyExc_ValueError,
              "Expected the PyTreeSpec transform function returns a PyTreeSpec with the same "
              "number of arity as the input (" +
                  std::to_string(node.arity) + "), got " + output.repr() +
                  " (input: " + input.repr() + ").");
      }
    }
    // Graft the transformed children onto the leaves of the output, in order.
    size_t first = stack.size() - static_cast<size_t>(node.arity);
    std::vector<Node> grafted;
    size_t next_child = first;
    for (const Node& out_node : output.nodes) {
      if (out_node.kind == NodeKind::Leaf) {
        auto& child = stack[next_child++];
        grafted.insert(grafted.end(), child.begin(), child.end());
      } else {
        grafted.push_back(out_node);
      }
    }
    stack.resize(first);
    stack.push_back(std::move(grafted));
  }
  result.nodes = std::move(stack.back());
  recount(result.nodes);
  return std::move(result).checked_depth();
}

TreeSpec TreeSpec::broadcast_to_common_suffix(const TreeSpec& other) const {
  TreeSpec result = empty_combination(other);
  std::function<void(Py_ssize_t, Py_ssize_t)> merge = [&](Py_ssize_t mine, Py_ssize_t theirs) {
    const Node& a = nodes[static_cast<size_t>(mine)];
    const Node& b = other.nodes[static_cast<size_t>(theirs)];
    if (a.kind == NodeKind::Leaf) {
      result.nodes.insert(result.nodes.end(), other.nodes.begin() + (theirs - b.num_nodes + 1),
                          other.nodes.begin() + theirs + 1);
      return;
    }
    if (b.kind == NodeKind::Leaf) {
      result.nodes.insert(result.nodes.end(), nodes.begin() + (mine - a.num_nodes + 1),
                          nodes.begin() + mine + 1);
      return;
    }
    check_broadcastable(*this, mine, other, theirs);
    std::vector<Py_ssize_t> my_roots = child_roots(mine);
    std::vector<Py_ssize_t> their_roots = other.child_roots(theirs);
    std::vector<size_t> order = matching_children(a, b);
    for (size_t i = 0; i < my_roots.size(); ++i) merge(my_roots[i], their_roots[order[i]]);
    result.nodes.push_back(a);
  };
  merge(num_nodes() - 1, other.num_nodes() - 1);
  recount(result.nodes);
  return result;
}

Ref TreeSpec::accessors(PyObject* entry_types, PyObject* accessor_type, PyObject* kinds) const {
  root();  // raises if uninitialized
  Ref result = check_ref(PyList_New(0));
  LazyBuiltins builtins;
  std::vector<Ref> prefix;
  std::function<void(Py_ssize_t)> visit = [&](Py_ssize_t index) {
    const Node& node = nodes[static_cast<size_t>(index)];
    if (node.kind == NodeKind::Leaf) {
      Ref path = check_ref(PyTuple_New(static_cast<Py_ssize_t>(prefix.size())));
      for (size_t i = 0; i < prefix.size(); ++i) {
        PyTuple_SET_ITEM(path.get(), static_cast<Py_ssize_t>(i), Py_NewRef(prefix[i].get()));
      }
      Ref accessor = check_ref(PyObject_CallOneArg(accessor_type, path.get()));
      check_int(PyList_Append(result.get(), accessor.get()));
      return;
    }
    if (node.arity == 0) return;
    PyObject* entry_type = node.kind == NodeKind::Custom
                               ? node.custom->path_entry_type
                               : PyTuple_GET_ITEM(entry_types, static_cast<Py_ssize_t>(node.kind));
    Ref type = node_type(*this, index, builtins);
    PyObject* kind = PyTuple_GET_ITEM(kinds, static_cast<Py_ssize_t>(node.kind));
    Ref entries = node_entries(node);
    std::vector<Py_ssize_t> roots = child_roots(index);
    for (size_t i = 0; i < roots.size(); ++i) {
      PyObject* entry = PyList_GET_ITEM(entries.get(), static_cast<Py_ssize_t>(i));
      prefix.push_back(
          check_ref(PyObject_CallFunctionObjArgs(entry_type, entry, type.get(), kind, nullptr)));
      visit(roots[i]);
      prefix.pop_back();
    }
  };
  visit(num_nodes() - 1);
  return result;
}

}  // namespace optree
