// Pickle state of a treespec: (layout, objects, none_is_leaf, namespace). `layout` is a bytes
// object with one fixed-size record per node, in treespec order: kind (1 byte), which of the
// node's objects are present (1 byte: node_data, node_entries, custom_type, original_keys), and
// arity (8 bytes, little endian). `objects` is a tuple of the present objects, node after node
// in that order. Counts are recomputed on load. A flat record array pickles and unpickles as one
// string, where a tuple per node cost the pickler a dozen objects per node.
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

namespace {

constexpr size_t kRecordSize = 10;
enum PresentObject : uint8_t {
  kHasData = 1,
  kHasEntries = 2,
  kHasCustomType = 4,
  kHasOriginalKeys = 8,
};

}  // namespace

Ref TreeSpec::pickle_state() const {
  root();  // raises if uninitialized

  std::string layout(nodes.size() * kRecordSize, '\0');
  std::vector<PyObject*> objects;  // borrowed from the nodes
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Node& node = nodes[i];
    uint8_t present = 0;
    auto add = [&](PyObject* obj, PresentObject bit) {
      if (obj == nullptr) return;
      present |= bit;
      objects.push_back(obj);
    };
    add(node.node_data.get(), kHasData);
    add(node.node_entries.get(), kHasEntries);
    add(node.custom ? node.custom->type : nullptr, kHasCustomType);
    add(node.original_keys.get(), kHasOriginalKeys);
    char* record = layout.data() + i * kRecordSize;
    record[0] = static_cast<char>(node.kind);
    record[1] = static_cast<char>(present);
    auto arity = static_cast<uint64_t>(node.arity);
    for (int b = 0; b < 8; ++b) record[2 + b] = static_cast<char>((arity >> (8 * b)) & 0xff);
  }
  Ref layout_bytes =
      check_ref(PyBytes_FromStringAndSize(layout.data(), static_cast<Py_ssize_t>(layout.size())));
  Ref object_tuple = check_ref(PyTuple_New(static_cast<Py_ssize_t>(objects.size())));
  for (size_t i = 0; i < objects.size(); ++i) {
    PyTuple_SET_ITEM(object_tuple.get(), static_cast<Py_ssize_t>(i), Py_NewRef(objects[i]));
  }
  Ref ns_text = unicode(ns);
  return check_ref(PyTuple_Pack(4, layout_bytes.get(), object_tuple.get(),
                                none_is_leaf ? Py_True : Py_False, ns_text.get()));
}

TreeSpec TreeSpec::from_pickle_state(PyObject* state) {
  if (!PyTuple_Check(state) || PyTuple_GET_SIZE(state) != 4) {
    malformed("the state must be a 4-tuple (layout, objects, none_is_leaf, namespace)");
  }
  PyObject* layout = PyTuple_GET_ITEM(state, 0);
  PyObject* objects = PyTuple_GET_ITEM(state, 1);
  PyObject* none_is_leaf = PyTuple_GET_ITEM(state, 2);
  PyObject* ns = PyTuple_GET_ITEM(state, 3);
  if (!PyBytes_CheckExact(layout) || PyBytes_GET_SIZE(layout) == 0 ||
      PyBytes_GET_SIZE(layout) % static_cast<Py_ssize_t>(kRecordSize) != 0) {
    malformed("the layout must be a non-empty bytes object of whole node records");
  }
  if (!PyTuple_CheckExact(objects)) malformed("the objects must be a tuple");
  if (!PyBool_Check(none_is_leaf)) malformed("none_is_leaf must be a bool");
  if (!PyUnicode_Check(ns)) malformed("the namespace must be a str");
  TreeSpec spec;
  spec.none_is_leaf = none_is_leaf == Py_True;
  const char* ns_utf8 = PyUnicode_AsUTF8(ns);
  if (ns_utf8 == nullptr) throw_python_error();
  spec.ns = ns_utf8;

  // Hold the layout: the checks below may run Python code.
  Ref layout_ref = Ref::borrow(layout);
  Ref objects_ref = Ref::borrow(objects);
  const auto* records = reinterpret_cast<const unsigned char*>(PyBytes_AS_STRING(layout));
  auto num_records = static_cast<size_t>(PyBytes_GET_SIZE(layout)) / kRecordSize;
  Py_ssize_t next_object = 0;
  RegistryView view;
  const TypeTable& table = view.snapshot().table_for(spec.ns);
  std::vector<size_t> stack;  // indices of subtree roots
  spec.nodes.reserve(num_records);
  for (size_t i = 0; i < num_records; ++i) {
    const unsigned char* record = records + i * kRecordSize;
    if (record[0] >= static_cast<unsigned>(NodeKind::FrozenDict)) malformed("unknown node kind");
    uint8_t present = record[1];
    if (present > 15) malformed("unknown object flags");
    uint64_t arity = 0;
    for (int b = 7; b >= 0; --b) arity = (arity << 8) | record[2 + b];
    if (arity > static_cast<uint64_t>(PY_SSIZE_T_MAX)) malformed("arity is out of range");
    auto take = [&](PresentObject bit) -> PyObject* {
      if ((present & bit) == 0) return Py_None;
      if (next_object >= PyTuple_GET_SIZE(objects)) malformed("too few objects");
      return PyTuple_GET_ITEM(objects, next_object++);
    };
    Node node;
    node.kind = static_cast<NodeKind>(record[0]);
    node.arity = static_cast<Py_ssize_t>(arity);
    PyObject* data = take(kHasData);
    PyObject* entries = take(kHasEntries);
    PyObject* custom_type = take(kHasCustomType);
    PyObject* original_keys = take(kHasOriginalKeys);

    if (static_cast<size_t>(node.arity) > stack.size())
      malformed("a node has more children than precede it");
    Py_ssize_t leaves = 0;
    Py_ssize_t count = 1;
    for (size_t c = stack.size() - static_cast<size_t>(node.arity); c < stack.size(); ++c) {
      leaves += spec.nodes[stack[c]].num_leaves;
      count += spec.nodes[stack[c]].num_nodes;
    }
    if (node.kind == NodeKind::Leaf) leaves = 1;
    node.num_leaves = leaves;
    node.num_nodes = count;
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
  if (next_object != PyTuple_GET_SIZE(objects)) malformed("too many objects");
  return std::move(spec).checked_depth();
}

}  // namespace optree
