// Rebuilding containers from children: unflatten, and the per-kind constructor it shares with
// the other rebuilding algorithms. flatten.cpp holds the matching flatten logic.
#include "optree/treespec.h"

namespace optree {

namespace {

Ref tuple_of(PyObject* const* children, Py_ssize_t n) {
  Ref tuple = check_ref(PyTuple_New(n));
  for (Py_ssize_t i = 0; i < n; ++i) PyTuple_SET_ITEM(tuple.get(), i, Py_NewRef(children[i]));
  return tuple;
}

Ref list_of(PyObject* const* children, Py_ssize_t n) {
  Ref list = check_ref(PyList_New(n));
  for (Py_ssize_t i = 0; i < n; ++i) PyList_SET_ITEM(list.get(), i, Py_NewRef(children[i]));
  return list;
}

// Fills `target` with keys -> children, in the original insertion order when it was recorded.
void fill_mapping(PyObject* target, PyObject* keys, PyObject* original_keys,
                  PyObject* const* children) {
  Py_ssize_t n = PyList_GET_SIZE(keys);
  if (original_keys == nullptr) {
    for (Py_ssize_t i = 0; i < n; ++i) {
      check_int(PyObject_SetItem(target, PyList_GET_ITEM(keys, i), children[i]));
    }
    return;
  }
  Ref by_key = check_ref(PyDict_New());
  for (Py_ssize_t i = 0; i < n; ++i) {
    check_int(PyDict_SetItem(by_key.get(), PyList_GET_ITEM(keys, i), children[i]));
  }
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(original_keys); ++i) {
    PyObject* key = PyList_GET_ITEM(original_keys, i);
    PyObject* value = PyDict_GetItemWithError(by_key.get(), key);
    if (value == nullptr) {
      if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, key);
      throw_python_error();
    }
    check_int(PyObject_SetItem(target, key, value));
  }
}

}  // namespace

Ref make_node(const Node& node, PyObject* const* children, LazyBuiltins& builtins) {
  Py_ssize_t n = node.arity;
  switch (node.kind) {
    case NodeKind::Leaf:
      raise(PyExc_SystemError, "make_node() called on a leaf");
    case NodeKind::None:
      return Ref::borrow(Py_None);
    case NodeKind::Tuple:
      return tuple_of(children, n);
    case NodeKind::List:
      return list_of(children, n);
    case NodeKind::Dict: {
      Ref dict = check_ref(PyDict_New());
      fill_mapping(dict.get(), node.node_data.get(), node.original_keys.get(), children);
      return dict;
    }
    case NodeKind::OrderedDict: {
      Ref dict =
          check_ref(PyObject_CallNoArgs(reinterpret_cast<PyObject*>(builtins.get().ordered_dict)));
      fill_mapping(dict.get(), node.node_data.get(), nullptr, children);
      return dict;
    }
    case NodeKind::DefaultDict: {
      PyObject* factory = PyTuple_GET_ITEM(node.node_data.get(), 0);
      Ref dict = check_ref(
          PyObject_CallOneArg(reinterpret_cast<PyObject*>(builtins.get().default_dict), factory));
      fill_mapping(dict.get(), PyTuple_GET_ITEM(node.node_data.get(), 1), node.original_keys.get(),
                   children);
      return dict;
    }
    case NodeKind::Deque: {
      Ref items = list_of(children, n);
      return check_ref(
          PyObject_CallFunctionObjArgs(reinterpret_cast<PyObject*>(builtins.get().deque),
                                       items.get(), node.node_data.get(), nullptr));
    }
    case NodeKind::NamedTuple: {
      Ref args = tuple_of(children, n);
      return check_ref(PyObject_Call(node.node_data.get(), args.get(), nullptr));
    }
    case NodeKind::StructSequence: {
      Ref args = tuple_of(children, n);
      return check_ref(PyObject_CallOneArg(node.node_data.get(), args.get()));
    }
    case NodeKind::Custom: {
      Ref args = tuple_of(children, n);
      return check_ref(PyObject_CallFunctionObjArgs(node.custom->unflatten_func,
                                                    node.node_data.get(), args.get(), nullptr));
    }
    case NodeKind::FrozenDict:
    case NodeKind::NumKinds:
      break;
  }
  raise(PyExc_SystemError, "unsupported node kind");
}

Ref TreeSpec::unflatten(PyObject* leaves) const {
  root();  // raises if uninitialized

  Ref sequence = check_ref(PySequence_Fast(leaves, "leaves must be iterable"));
  Py_ssize_t num_given = PySequence_Fast_GET_SIZE(sequence.get());
  PyObject** items = PySequence_Fast_ITEMS(sequence.get());
  Py_ssize_t expected = num_leaves();
  if (num_given < expected) {
    raise(PyExc_ValueError, "Too few leaves for PyTreeSpec; expected: " + std::to_string(expected) +
                                ", got: " + std::to_string(num_given) + ".");
  }
  if (num_given > expected) {
    raise(PyExc_ValueError,
          "Too many leaves for PyTreeSpec; expected: " + std::to_string(expected) + ".");
  }
  std::vector<PyObject*> stack;  // owned references
  stack.reserve(nodes.size());
  struct Cleanup {
    std::vector<PyObject*>& stack;
    ~Cleanup() {
      for (PyObject* obj : stack) Py_DECREF(obj);
    }
  } cleanup{stack};
  Py_ssize_t leaf_index = 0;
  LazyBuiltins builtins;
  for (const Node& node : nodes) {
    if (node.kind == NodeKind::Leaf) {
      stack.push_back(Py_NewRef(items[leaf_index++]));
      continue;
    }
    size_t first = stack.size() - static_cast<size_t>(node.arity);
    Ref built = make_node(node, stack.data() + first, builtins);
    for (size_t i = first; i < stack.size(); ++i) Py_DECREF(stack[i]);
    stack.resize(first);
    stack.push_back(built.release());
  }
  PyObject* result = stack.back();
  stack.clear();
  return Ref::steal(result);
}

}  // namespace optree
