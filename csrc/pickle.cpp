// Pickle state of a treespec: (nodes, none_is_leaf, namespace), each node being
// (kind, arity, node_data, node_entries, custom_type, num_leaves, num_nodes, original_keys).
// Loading validates everything, since the state may come from anywhere.
#include "optree/treespec.h"

namespace optree {

namespace {

[[noreturn]] void malformed(const std::string& why) {
  raise(PyExc_ValueError, "Malformed pickled PyTreeSpec: " + why + ".");
}

Py_ssize_t as_size(PyObject* obj, const char* what) {
  if (!PyLong_CheckExact(obj)) malformed(std::string(what) + " must be an int");
  Py_ssize_t value = PyLong_AsSsize_t(obj);
  if (value == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    malformed(std::string(what) + " is out of range");
  }
  if (value < 0) malformed(std::string(what) + " must not be negative");
  return value;
}

void check_key_list(PyObject* keys, Py_ssize_t arity) {
  if (!PyList_CheckExact(keys) || PyList_GET_SIZE(keys) != arity) {
    malformed("dict keys must be a list with one key per child");
  }
}

// Dict keys must be hashable and distinct, and the original keys the same set.
void validate_keys(const Node& node, PyObject* original_keys) {
  PyObject* keys = dict_keys_of(node);
  Ref key_set = Ref::steal(PySet_New(keys));
  if (!key_set) {
    if (!PyErr_ExceptionMatches(PyExc_TypeError)) throw_python_error();
    PyErr_Clear();
    malformed("dict keys must be hashable");
  }
  if (PySet_GET_SIZE(key_set.get()) != node.arity) malformed("dict keys must be distinct");
  if (node.kind == NodeKind::OrderedDict) return;
  if (original_keys != Py_None) {
    if (!PyList_CheckExact(original_keys) || PyList_GET_SIZE(original_keys) != node.arity) {
      malformed("original keys must be a list with one key per child");
    }
    Ref original_set = Ref::steal(PySet_New(original_keys));
    if (!original_set) {
      PyErr_Clear();
      malformed("original keys must be hashable");
    }
    if (!check_int(PyObject_RichCompareBool(key_set.get(), original_set.get(), Py_EQ))) {
      malformed("original keys differ from the keys");
    }
  }
}

}  // namespace

Ref TreeSpec::pickle_state() const {
  root();  // raises if uninitialized

  Ref node_states = check_ref(PyTuple_New(num_nodes()));
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Node& node = nodes[i];
    auto or_none = [](PyObject* obj) { return obj == nullptr ? Py_None : obj; };
    PyObject* custom_type = node.custom ? node.custom->type : Py_None;
    Ref state = check_ref(
        Py_BuildValue("(inOOOnnO)", static_cast<int>(node.kind), node.arity,
                      or_none(node.node_data.get()), or_none(node.node_entries.get()), custom_type,
                      node.num_leaves, node.num_nodes, or_none(node.original_keys.get())));
    PyTuple_SET_ITEM(node_states.get(), static_cast<Py_ssize_t>(i), state.release());
  }
  Ref ns_text = unicode(ns);
  return check_ref(
      PyTuple_Pack(3, node_states.get(), none_is_leaf ? Py_True : Py_False, ns_text.get()));
}

TreeSpec TreeSpec::from_pickle_state(PyObject* state) {
  if (!PyTuple_Check(state) || PyTuple_GET_SIZE(state) != 3) {
    malformed("the state must be a 3-tuple (nodes, none_is_leaf, namespace)");
  }
  PyObject* node_states = PyTuple_GET_ITEM(state, 0);
  PyObject* none_is_leaf = PyTuple_GET_ITEM(state, 1);
  PyObject* ns = PyTuple_GET_ITEM(state, 2);
  if (!PyTuple_Check(node_states) || PyTuple_GET_SIZE(node_states) == 0) {
    malformed("nodes must be a non-empty tuple");
  }
  if (!PyBool_Check(none_is_leaf)) malformed("none_is_leaf must be a bool");
  if (!PyUnicode_Check(ns)) malformed("the namespace must be a str");
  TreeSpec spec;
  spec.none_is_leaf = none_is_leaf == Py_True;
  const char* ns_utf8 = PyUnicode_AsUTF8(ns);
  if (ns_utf8 == nullptr) throw_python_error();
  spec.ns = ns_utf8;

  RegistryView view;
  const TypeTable& table = view.snapshot().table_for(spec.ns);
  std::vector<size_t> stack;  // indices of subtree roots
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(node_states); ++i) {
    PyObject* item = PyTuple_GET_ITEM(node_states, i);
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 8)
      malformed("each node must be an 8-tuple");
    Py_ssize_t kind_value = as_size(PyTuple_GET_ITEM(item, 0), "node kind");
    if (kind_value >= static_cast<Py_ssize_t>(NodeKind::FrozenDict)) malformed("unknown node kind");
    Node node;
    node.kind = static_cast<NodeKind>(kind_value);
    node.arity = as_size(PyTuple_GET_ITEM(item, 1), "arity");
    PyObject* data = PyTuple_GET_ITEM(item, 2);
    PyObject* entries = PyTuple_GET_ITEM(item, 3);
    PyObject* custom_type = PyTuple_GET_ITEM(item, 4);
    node.num_leaves = as_size(PyTuple_GET_ITEM(item, 5), "num_leaves");
    node.num_nodes = as_size(PyTuple_GET_ITEM(item, 6), "num_nodes");
    PyObject* original_keys = PyTuple_GET_ITEM(item, 7);

    if (static_cast<size_t>(node.arity) > stack.size())
      malformed("a node has more children than precede it");
    Py_ssize_t leaves = 0;
    Py_ssize_t count = 1;
    for (size_t c = stack.size() - static_cast<size_t>(node.arity); c < stack.size(); ++c) {
      leaves += spec.nodes[stack[c]].num_leaves;
      count += spec.nodes[stack[c]].num_nodes;
    }
    if (node.kind == NodeKind::Leaf) leaves = 1;
    if (node.num_leaves != leaves || node.num_nodes != count) malformed("inconsistent node counts");
    if (node.kind != NodeKind::Custom && custom_type != Py_None)
      malformed("only custom nodes have a type");
    if (node.kind != NodeKind::Custom && entries != Py_None)
      malformed("only custom nodes have entries");
    bool is_plain_dict = node.kind == NodeKind::Dict || node.kind == NodeKind::DefaultDict;
    if (!is_plain_dict && original_keys != Py_None) malformed("only dicts have original keys");

    switch (node.kind) {
      case NodeKind::Leaf:
      case NodeKind::None:
        if (node.arity != 0 || data != Py_None)
          malformed("leaves and None have no children or data");
        if (node.kind == NodeKind::None && spec.none_is_leaf)
          malformed("None is a leaf in this treespec");
        break;
      case NodeKind::Tuple:
      case NodeKind::List:
        if (data != Py_None) malformed("tuples and lists have no data");
        break;
      case NodeKind::Dict:
      case NodeKind::OrderedDict:
        check_key_list(data, node.arity);
        node.node_data = Ref::borrow(data);
        break;
      case NodeKind::DefaultDict:
        if (!PyTuple_Check(data) || PyTuple_GET_SIZE(data) != 2) {
          malformed("defaultdict data must be (default_factory, keys)");
        }
        check_key_list(PyTuple_GET_ITEM(data, 1), node.arity);
        if (PyTuple_GET_ITEM(data, 0) != Py_None && !PyCallable_Check(PyTuple_GET_ITEM(data, 0))) {
          malformed("defaultdict default_factory must be callable or None");
        }
        node.node_data = Ref::borrow(data);
        break;
      case NodeKind::Deque:
        if (data != Py_None && as_size(data, "deque maxlen") < node.arity) {
          malformed("a deque has more children than its maxlen");
        }
        node.node_data = Ref::borrow(data);
        break;
      case NodeKind::NamedTuple: {
        if (!is_namedtuple_class(data, view.shard().builtins()))
          malformed("namedtuple data must be a namedtuple class");
        Ref fields = namedtuple_fields(data);
        if (PyTuple_GET_SIZE(fields.get()) != node.arity) malformed("namedtuple arity mismatch");
        node.node_data = Ref::borrow(data);
        break;
      }
      case NodeKind::StructSequence: {
        if (!is_structseq_class(data, view.shard().builtins()))
          malformed("structseq data must be a PyStructSequence class");
        Ref fields = structseq_fields(data);
        if (PyTuple_GET_SIZE(fields.get()) != node.arity)
          malformed("PyStructSequence arity mismatch");
        node.node_data = Ref::borrow(data);
        break;
      }
      case NodeKind::Custom: {
        if (!PyType_Check(custom_type)) malformed("a custom node needs its type");
        const RegistrationPtr* registration =
            table.find(reinterpret_cast<PyTypeObject*>(custom_type));
        if (registration == nullptr) {
          raise(PyExc_RuntimeError,
                "Unknown custom type in pickled PyTreeSpec: " + repr_of(custom_type) +
                    (spec.ns.empty() ? std::string(" in the global namespace.")
                                     : " in namespace " + repr_of(ns) + "."));
        }
        node.custom = *registration;
        node.node_data = Ref::borrow(data);
        if (entries != Py_None) {
          if (!PyTuple_Check(entries) || PyTuple_GET_SIZE(entries) != node.arity) {
            malformed("custom node entries must be a tuple with one entry per child");
          }
          node.node_entries = Ref::borrow(entries);
        }
        break;
      }
      default:
        malformed("unknown node kind");
    }
    if (is_dict_kind(node.kind)) {
      validate_keys(node, original_keys);
      if (original_keys != Py_None) node.original_keys = Ref::borrow(original_keys);
    }
    stack.resize(stack.size() - static_cast<size_t>(node.arity));
    stack.push_back(spec.nodes.size());
    spec.nodes.push_back(std::move(node));
  }
  if (stack.size() != 1) malformed("the nodes do not form a single tree");
  return std::move(spec).checked_depth();
}

}  // namespace optree
