// optree.parallel's transfer format (see transfer.h).
//
// Structure encoding, all integers unsigned LEB128 varints unless said otherwise:
//
//   "OPTS" 0x01                      magic and format version
//   flags                            1 byte: bit 0 = none_is_leaf
//   namespace                        varint length + UTF-8
//   node count                       varint
//   nodes, in post-order:
//     kind                           1 byte (NodeKind)
//     arity                          varint, except for Leaf and None
//     Dict / OrderedDict:            arity keys (values); Dict only: order byte (1: arity
//                                    varints follow, the index in the keys of each key in
//                                    insertion order)
//     DefaultDict:                   default_factory (value), then as Dict
//     Deque:                         maxlen (value)
//     NamedTuple / StructSequence:   the type (value)
//     Custom:                        the type (value), the registration's namespace (varint
//                                    length + UTF-8), metadata (value), entries byte (1: arity
//                                    entries follow, as values)
//
// Values are tagged: 'N' None, 'T' True, 'F' False, 'i' int (zigzag varint, 64 bits), 'f' float
// (8 bytes, little endian), 's' str (UTF-8), 'b' bytes, '(' tuple and '[' list (varint count,
// then the items), 'g' a global (module and qualified name as str values, then a flag byte:
// 1 = the type of that object), 'p' a pickle (varint length + bytes). Only exact types are
// encoded natively; instances of subclasses are pickled.
//
// Leaf encoding: varint leaf count, then per leaf a tag as for values ('N', 'T', 'F', 'i', 'f',
// 's', 'b', 'p') or 'o' for the next object of the tuple beside the bytes.
#include "optree/transfer.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "internal.h"
#include "optree/introspection.h"
#include "optree/text.h"

namespace optree::transfer {

namespace {

constexpr char kMagic[] = {'O', 'P', 'T', 'S', 1};
constexpr size_t kMagicSize = sizeof(kMagic);
// Values nest at most this deep in an encoding (keys and metadata); deeper ones are pickled.
constexpr int kMaxValueDepth = 64;
// Bytes leaves of this size and more travel as objects beside the encoding, copied once.
constexpr Py_ssize_t kInlineBytesLimit = 512;

[[noreturn]] void malformed(const std::string& why) {
  raise(PyExc_ValueError, "optree.parallel: malformed packed data: " + why + ".");
}

// ------------------------------------------------------------------------------ writing

class Writer {
 public:
  void reserve(size_t size) { out_.reserve(size); }
  void byte(uint8_t value) { out_.push_back(static_cast<char>(value)); }
  void varint(uint64_t value) {
    while (value >= 0x80) {
      out_.push_back(static_cast<char>((value & 0x7f) | 0x80));
      value >>= 7;
    }
    out_.push_back(static_cast<char>(value));
  }
  void zigzag(int64_t value) {
    varint((static_cast<uint64_t>(value) << 1) ^ static_cast<uint64_t>(value >> 63));
  }
  void f64(double value) {
    auto bits = std::bit_cast<uint64_t>(value);
    if constexpr (std::endian::native != std::endian::little) bits = swap(bits);
    char buffer[8];
    std::memcpy(buffer, &bits, 8);
    out_.append(buffer, 8);
  }
  void text(const char* data, Py_ssize_t size) {
    varint(static_cast<uint64_t>(size));
    out_.append(data, static_cast<size_t>(size));
  }
  void text(const std::string& value) { text(value.data(), static_cast<Py_ssize_t>(value.size())); }
  void raw(const std::string& data) { out_.append(data); }
  const std::string& str() const noexcept { return out_; }
  Ref bytes() const {
    return check_ref(PyBytes_FromStringAndSize(out_.data(), static_cast<Py_ssize_t>(out_.size())));
  }

  static uint64_t swap(uint64_t value) {
    uint64_t result = 0;
    for (int i = 0; i < 8; ++i) result = (result << 8) | ((value >> (8 * i)) & 0xff);
    return result;
  }

 private:
  std::string out_;
};

// ------------------------------------------------------------------------------ reading

class Reader {
 public:
  Reader(const char* data, size_t size) : data_(data), end_(data + size) {}

  size_t remaining() const noexcept { return static_cast<size_t>(end_ - data_); }
  bool done() const noexcept { return data_ == end_; }
  const char* position() const noexcept { return data_; }

  uint8_t byte() {
    need(1);
    return static_cast<uint8_t>(*data_++);
  }
  uint64_t varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t b = byte();
      value |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) {
        if (shift == 63 && b > 1) break;
        return value;
      }
    }
    malformed("an integer is too long");
  }
  // A count or size: at most `limit`.
  Py_ssize_t size(size_t limit, const char* what) {
    uint64_t value = varint();
    if (value > limit || value > static_cast<uint64_t>(PY_SSIZE_T_MAX)) {
      malformed(std::string(what) + " is out of range");
    }
    return static_cast<Py_ssize_t>(value);
  }
  int64_t zigzag() {
    uint64_t value = varint();
    return static_cast<int64_t>(value >> 1) ^ -static_cast<int64_t>(value & 1);
  }
  double f64() {
    need(8);
    uint64_t bits;
    std::memcpy(&bits, data_, 8);
    data_ += 8;
    if constexpr (std::endian::native != std::endian::little) bits = Writer::swap(bits);
    return std::bit_cast<double>(bits);
  }
  const char* take(Py_ssize_t size) {
    need(static_cast<size_t>(size));
    const char* start = data_;
    data_ += size;
    return start;
  }
  // A length-prefixed UTF-8 string, as a str object.
  Ref unicode() {
    Py_ssize_t size = this->size(remaining(), "a string length");
    const char* start = take(size);
    Ref text = Ref::steal(PyUnicode_DecodeUTF8(start, size, "strict"));
    if (!text) {
      PyErr_Clear();
      malformed("a string is not UTF-8");
    }
    return text;
  }
  // The same, as its UTF-8 bytes (names and namespaces: they must make str objects too).
  std::string text() {
    Ref checked = unicode();
    Py_ssize_t size = 0;
    const char* utf8 = PyUnicode_AsUTF8AndSize(checked.get(), &size);
    if (utf8 == nullptr) throw_python_error();
    return std::string(utf8, static_cast<size_t>(size));
  }

 private:
  void need(size_t size) const {
    if (remaining() < size) malformed("it ends too early");
  }
  const char* data_;
  const char* end_;
};

// A list or tuple of `items` (new references, taken over). Decoding makes the items first and
// their container last: it runs Python code (unpickling, imports), which must never reach a
// container with empty slots (through gc.get_objects(), say).
template <bool kList>
Ref sequence_of(std::vector<Ref>& items) {
  auto n = static_cast<Py_ssize_t>(items.size());
  Ref sequence = check_ref(kList ? PyList_New(n) : PyTuple_New(n));
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* item = items[static_cast<size_t>(i)].release();
    if constexpr (kList) {
      PyList_SET_ITEM(sequence.get(), i, item);
    } else {
      PyTuple_SET_ITEM(sequence.get(), i, item);
    }
  }
  return sequence;
}

// ------------------------------------------------------------------------------ values

void write_pickle(Writer& out, PyObject* obj, PyObject* dumps) {
  Ref pickled = check_ref(PyObject_CallOneArg(dumps, obj));
  if (!PyBytes_Check(pickled.get())) {
    raise(PyExc_TypeError, "optree.parallel: the pickler returned " +
                               type_name(reinterpret_cast<PyObject*>(Py_TYPE(pickled.get()))) +
                               ", not bytes");
  }
  out.byte('p');
  out.text(PyBytes_AS_STRING(pickled.get()), PyBytes_GET_SIZE(pickled.get()));
}

// The Python hooks of encoding, and the globals written so far (a tree names few types, often).
struct EncodeHooks {
  PyObject* locate;
  PyObject* dumps;
  // Held: a type in a list of custom metadata can die while encoding runs Python code, and a
  // new type take its address.
  std::vector<std::pair<Ref, std::string>> globals;
};

void locate_global(Writer& out, PyObject* obj, PyObject* locate) {
  Ref where = check_ref(PyObject_CallOneArg(locate, obj));
  if (!PyTuple_CheckExact(where.get()) || PyTuple_GET_SIZE(where.get()) != 3 ||
      !PyUnicode_CheckExact(PyTuple_GET_ITEM(where.get(), 0)) ||
      !PyUnicode_CheckExact(PyTuple_GET_ITEM(where.get(), 1)) ||
      !PyLong_CheckExact(PyTuple_GET_ITEM(where.get(), 2))) {
    raise(PyExc_TypeError, "optree.parallel: locate() must return (module, qualname, flag)");
  }
  out.byte('g');
  for (Py_ssize_t i = 0; i < 2; ++i) {
    Py_ssize_t size = 0;
    const char* text = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(where.get(), i), &size);
    if (text == nullptr) throw_python_error();
    out.byte('s');
    out.text(text, size);
  }
  out.byte(check_int(PyObject_IsTrue(PyTuple_GET_ITEM(where.get(), 2))) ? 1 : 0);
}

void write_global(Writer& out, PyObject* obj, EncodeHooks& hooks) {
  for (const auto& [known, encoded] : hooks.globals) {
    if (known.get() == obj) {
      out.raw(encoded);
      return;
    }
  }
  Writer one;
  locate_global(one, obj, hooks.locate);
  hooks.globals.emplace_back(Ref::borrow(obj), one.str());
  out.raw(one.str());
}

// Writes the natively encoded scalars; false (nothing written) for anything else.
[[gnu::always_inline]] inline bool write_scalar(Writer& out, PyObject* obj) {
  PyTypeObject* type = Py_TYPE(obj);
  if (type == &PyFloat_Type) {
    out.byte('f');
    out.f64(PyFloat_AS_DOUBLE(obj));
    return true;
  }
  if (type == &PyLong_Type) {
    int overflow = 0;
    long long value = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (overflow != 0) return false;
    if (value == -1 && PyErr_Occurred()) throw_python_error();
    out.byte('i');
    out.zigzag(value);
    return true;
  }
  if (type == &PyUnicode_Type) {
    Py_ssize_t size = 0;
    const char* text = PyUnicode_AsUTF8AndSize(obj, &size);
    if (text == nullptr) {  // lone surrogates: pickled
      PyErr_Clear();
      return false;
    }
    out.byte('s');
    out.text(text, size);
    return true;
  }
  if (obj == Py_None) {
    out.byte('N');
    return true;
  }
  if (obj == Py_True || obj == Py_False) {
    out.byte(obj == Py_True ? 'T' : 'F');
    return true;
  }
  return false;
}

void write_value(Writer& out, PyObject* obj, EncodeHooks& hooks, int depth) {
  if (write_scalar(out, obj)) return;
  PyTypeObject* type = Py_TYPE(obj);
  if (type == &PyBytes_Type) {
    out.byte('b');
    out.text(PyBytes_AS_STRING(obj), PyBytes_GET_SIZE(obj));
    return;
  }
  if ((type == &PyTuple_Type || type == &PyList_Type) && depth < kMaxValueDepth) {
    // A tuple copy of a list: encoding items may run Python code.
    Ref items = type == &PyTuple_Type ? Ref::borrow(obj) : check_ref(PySequence_Tuple(obj));
    Py_ssize_t n = PyTuple_GET_SIZE(items.get());
    out.byte(type == &PyTuple_Type ? '(' : '[');
    out.varint(static_cast<uint64_t>(n));
    for (Py_ssize_t i = 0; i < n; ++i) {
      write_value(out, PyTuple_GET_ITEM(items.get(), i), hooks, depth + 1);
    }
    return;
  }
  if (PyType_Check(obj)) {
    write_global(out, obj, hooks);
    return;
  }
  write_pickle(out, obj, hooks.dumps);
}

// The Python hooks of decoding, and the globals resolved so far, by their encoded name.
struct DecodeHooks {
  PyObject* resolve;
  PyObject* loads;
  std::unordered_map<std::string, Ref> globals;
};

Ref read_value(Reader& in, DecodeHooks& hooks, const char* role, int depth);

Ref read_str(Reader& in) {
  if (in.byte() != 's') malformed("a name is not a string");
  return in.unicode();
}

// A global (after its 'g' tag): resolved once per decoding; `role` says what it is, for the
// error message.
Ref read_global(Reader& in, DecodeHooks& hooks, const std::string& role) {
  const char* start = in.position();
  Ref module = read_str(in);
  Ref qualname = read_str(in);
  uint8_t flag = in.byte();
  if (flag > 1) malformed("unknown global flag");
  std::string name(start, static_cast<size_t>(in.position() - start));
  auto it = hooks.globals.find(name);
  if (it != hooks.globals.end()) return it->second;
  Ref role_text = unicode(role);
  Ref flag_obj = check_ref(PyLong_FromLong(flag));
  Ref found = check_ref(PyObject_CallFunctionObjArgs(hooks.resolve, module.get(), qualname.get(),
                                                     flag_obj.get(), role_text.get(), nullptr));
  hooks.globals.emplace(std::move(name), found);
  return found;
}

Ref read_pickle(Reader& in, PyObject* loads) {
  Py_ssize_t size = in.size(in.remaining(), "a pickle length");
  // A copy: the unpickler (or an exception it raises) must not hold on to the encoding.
  Ref pickled = check_ref(PyBytes_FromStringAndSize(in.take(size), size));
  return check_ref(PyObject_CallOneArg(loads, pickled.get()));
}

// The natively encoded scalars (and 'p' pickles): shared by values and leaves.
[[gnu::always_inline]] inline Ref read_scalar(uint8_t tag, Reader& in, PyObject* loads,
                                              bool& found) {
  found = true;
  switch (tag) {
    case 'f':
      return check_ref(PyFloat_FromDouble(in.f64()));
    case 'i':
      return check_ref(PyLong_FromLongLong(in.zigzag()));
    case 's':
      return in.unicode();
    case 'N':
      return Ref::borrow(Py_None);
    case 'T':
      return Ref::borrow(Py_True);
    case 'F':
      return Ref::borrow(Py_False);
    case 'b': {
      Py_ssize_t size = in.size(in.remaining(), "a bytes length");
      return check_ref(PyBytes_FromStringAndSize(in.take(size), size));
    }
    case 'p':
      return read_pickle(in, loads);
    default:
      found = false;
      return Ref();
  }
}

Ref read_value(Reader& in, DecodeHooks& hooks, const char* role, int depth) {
  uint8_t tag = in.byte();
  bool found = false;
  Ref scalar = read_scalar(tag, in, hooks.loads, found);
  if (found) return scalar;
  switch (tag) {
    case '(':
    case '[': {
      if (depth >= kMaxValueDepth) malformed("values nest too deep");
      // Each item takes at least one byte: no allocation beyond the data.
      Py_ssize_t n = in.size(in.remaining(), "a sequence length");
      std::vector<Ref> items;
      items.reserve(static_cast<size_t>(n));
      for (Py_ssize_t i = 0; i < n; ++i) items.push_back(read_value(in, hooks, role, depth + 1));
      return tag == '(' ? sequence_of<false>(items) : sequence_of<true>(items);
    }
    case 'g':
      return read_global(in, hooks, role);
    default:
      malformed("unknown value tag " + std::to_string(tag));
  }
}

// ------------------------------------------------------------------------------ comparing

bool same_value(PyObject* a, PyObject* b, int depth);

bool same_items(PyObject* const* a, PyObject* const* b, Py_ssize_t n, int depth) {
  for (Py_ssize_t i = 0; i < n; ++i) {
    if (!same_value(a[i], b[i], depth + 1)) return false;
  }
  return true;
}

// Same type and equal, recursively for tuples, lists and dicts; floats by their bits.
bool same_value(PyObject* a, PyObject* b, int depth) {
  if (a == b) return true;
  if (a == nullptr || b == nullptr || Py_TYPE(a) != Py_TYPE(b) || depth > kMaxValueDepth) {
    return false;
  }
  PyTypeObject* type = Py_TYPE(a);
  if (type == &PyFloat_Type) {
    double x = PyFloat_AS_DOUBLE(a);
    double y = PyFloat_AS_DOUBLE(b);
    return std::memcmp(&x, &y, sizeof(double)) == 0;
  }
  if (type == &PyTuple_Type) {
    Py_ssize_t n = PyTuple_GET_SIZE(a);
    return n == PyTuple_GET_SIZE(b) &&
           same_items(&PyTuple_GET_ITEM(a, 0), &PyTuple_GET_ITEM(b, 0), n, depth);
  }
  if (type == &PyList_Type) {
    // Tuple copies: comparing items may run Python code that changes the lists.
    Ref x = check_ref(PyList_AsTuple(a));
    Ref y = check_ref(PyList_AsTuple(b));
    return same_value(x.get(), y.get(), depth);
  }
  if (type == &PyDict_Type) {
    if (PyDict_GET_SIZE(a) != PyDict_GET_SIZE(b)) return false;
    Ref x = check_ref(PyDict_Items(a));
    Ref y = check_ref(PyDict_Items(b));
    return same_value(x.get(), y.get(), depth);
  }
  int equal = PyObject_RichCompareBool(a, b, Py_EQ);
  if (equal < 0) {
    PyErr_Clear();  // not comparable: not the same
    return false;
  }
  return equal == 1;
}

// ------------------------------------------------------------------------------ dict order

// For each key of `original` (insertion order), its index in `keys` (treespec order).
std::vector<Py_ssize_t> insertion_permutation(PyObject* keys, PyObject* original) {
  Py_ssize_t n = PyList_GET_SIZE(keys);
  std::unordered_map<PyObject*, Py_ssize_t> by_identity;
  by_identity.reserve(static_cast<size_t>(n));
  for (Py_ssize_t i = 0; i < n; ++i) by_identity.emplace(PyList_GET_ITEM(keys, i), i);
  std::vector<Py_ssize_t> permutation;
  permutation.reserve(static_cast<size_t>(n));
  Ref by_value;  // built only if some key is not found by identity
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(original); ++i) {
    PyObject* key = PyList_GET_ITEM(original, i);
    auto it = by_identity.find(key);
    if (it != by_identity.end()) {
      permutation.push_back(it->second);
      continue;
    }
    if (!by_value) {
      by_value = check_ref(PyDict_New());
      for (Py_ssize_t j = 0; j < n; ++j) {
        Ref index = check_ref(PyLong_FromSsize_t(j));
        check_int(PyDict_SetItem(by_value.get(), PyList_GET_ITEM(keys, j), index.get()));
      }
    }
    PyObject* index = PyDict_GetItemWithError(by_value.get(), key);
    if (index == nullptr) {
      if (!PyErr_Occurred()) {
        PyErr_SetString(PyExc_SystemError, "optree.parallel: a dict key order is inconsistent");
      }
      throw_python_error();
    }
    permutation.push_back(PyLong_AsSsize_t(index));
  }
  return permutation;
}

// Adds a note to the exception being raised.
void add_note(const std::string& note) {
  SetAsideError raised;
  if (raised.exception() == nullptr) return;
  PyObject* added = PyObject_CallMethod(raised.exception(), "add_note", "s", note.c_str());
  if (added == nullptr) {
    PyErr_Clear();
  } else {
    Py_DECREF(added);
  }
}

std::string quoted(const std::string& text) { return "'" + text + "'"; }

std::string type_path(PyObject* type) {
  Ref module = Ref::steal(PyObject_GetAttrString(type, "__module__"));
  Ref qualname = Ref::steal(PyObject_GetAttrString(type, "__qualname__"));
  if (!module || !qualname || !PyUnicode_Check(module.get()) || !PyUnicode_Check(qualname.get())) {
    PyErr_Clear();
    return repr_of(type);
  }
  return str_of(module.get()) + "." + str_of(qualname.get());
}

}  // namespace

// ------------------------------------------------------------------------------ structure

namespace {

// The layout of a node after its kind byte, one home for both directions: nothing for a leaf
// or None; else the arity, then the kind's own fields, which `codec` writes or reads.
template <class Codec>
void code_node(Codec& codec, NodeKind kind) {
  if (kind == NodeKind::Leaf || kind == NodeKind::None) return;
  codec.arity();
  switch (kind) {
    case NodeKind::Tuple:
    case NodeKind::List:
      return;
    case NodeKind::Dict:
    case NodeKind::OrderedDict:
    case NodeKind::DefaultDict:
      return codec.dict();
    case NodeKind::Deque:
      return codec.deque();
    case NodeKind::NamedTuple:
    case NodeKind::StructSequence:
      return codec.tuple_class();
    case NodeKind::Custom:
      return codec.custom();
    default:
      return codec.unknown();
  }
}

// Writes the fields of one node: (default_factory,) keys[, insertion order] of a dict kind;
// a deque's maxlen; a namedtuple's or PyStructSequence's class; a custom node's type,
// registration namespace, metadata and entries (if any).
struct NodeEncoder {
  Writer& out;
  EncodeHooks& hooks;
  const Node& node;

  void value(PyObject* obj) { write_value(out, obj, hooks, 0); }
  void arity() { out.varint(static_cast<uint64_t>(node.arity)); }
  void dict() {
    if (node.kind == NodeKind::DefaultDict) value(PyTuple_GET_ITEM(node.node_data.get(), 0));
    Ref keys = check_ref(PyList_GetSlice(dict_keys_of(node), 0, PY_SSIZE_T_MAX));
    if (PyList_GET_SIZE(keys.get()) != node.arity) {
      raise(PyExc_SystemError, "optree.parallel: a dict node has the wrong number of keys");
    }
    for (Py_ssize_t i = 0; i < node.arity; ++i) value(PyList_GET_ITEM(keys.get(), i));
    if (!sorts_dict_keys(node.kind)) return;
    if (!node.original_keys) {
      out.byte(0);
      return;
    }
    out.byte(1);
    for (Py_ssize_t index : insertion_permutation(keys.get(), node.original_keys.get())) {
      out.varint(static_cast<uint64_t>(index));
    }
  }
  void deque() { value(node.node_data.get()); }
  void tuple_class() { write_global(out, node.node_data.get(), hooks); }
  void custom() {
    write_global(out, node.custom->type, hooks);
    out.text(node.custom->ns);
    value(node.node_data ? node.node_data.get() : Py_None);
    if (!node.node_entries) {
      out.byte(0);
      return;
    }
    out.byte(1);
    Ref entries = Ref::borrow(node.node_entries.get());
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(entries.get()); ++i) {
      value(PyTuple_GET_ITEM(entries.get(), i));
    }
  }
  [[noreturn]] void unknown() {
    raise(PyExc_TypeError, "optree.parallel: cannot encode a node of kind " +
                               std::to_string(static_cast<int>(node.kind)));
  }
};

}  // namespace

Ref encode_structure(const TreeSpec& spec, PyObject* locate, PyObject* dumps) {
  spec.root();  // raises if uninitialized
  Writer out;
  out.reserve(64 + spec.nodes().size() * 4);
  for (char c : kMagic) out.byte(static_cast<uint8_t>(c));
  out.byte(spec.none_is_leaf() ? 1 : 0);
  out.text(spec.ns());
  out.varint(spec.nodes().size());
  EncodeHooks hooks{locate, dumps, {}};
  for (const Node& node : spec.nodes()) {
    out.byte(static_cast<uint8_t>(node.kind));
    NodeEncoder encoder{out, hooks, node};
    code_node(encoder, node.kind);
  }
  return out.bytes();
}

namespace {

// A node as read, before it is checked (counts too) and bound to this interpreter's registry.
struct PendingNode : Node {
  Ref custom_type;
  std::string registration_ns;
};

void check_keys(PyObject* keys, Py_ssize_t arity) {
  Ref key_set = Ref::steal(PySet_New(keys));
  if (!key_set) {
    PyErr_Clear();
    malformed("dict keys must be hashable");
  }
  if (PySet_GET_SIZE(key_set.get()) != arity) malformed("dict keys must be distinct");
}

// Reads the fields of one node that NodeEncoder wrote, running the Python hooks.
struct NodeDecoder {
  Reader& in;
  DecodeHooks& hooks;
  PendingNode& node;
  Py_ssize_t num_nodes;

  void arity() { node.arity = in.size(static_cast<size_t>(num_nodes), "an arity"); }
  void dict() {
    Ref factory;
    if (node.kind == NodeKind::DefaultDict) {
      factory = read_value(in, hooks, "default_factory of a defaultdict", 0);
    }
    std::vector<Ref> key_items;
    key_items.reserve(static_cast<size_t>(node.arity));
    for (Py_ssize_t i = 0; i < node.arity; ++i) {
      key_items.push_back(read_value(in, hooks, "type in a dict key", 0));
    }
    Ref keys = sequence_of<true>(key_items);
    if (sorts_dict_keys(node.kind)) read_insertion_order(keys.get());
    node.node_data = node.kind == NodeKind::DefaultDict
                         ? check_ref(PyTuple_Pack(2, factory.get(), keys.get()))
                         : keys;
  }
  void read_insertion_order(PyObject* keys) {
    uint8_t ordered = in.byte();
    if (ordered > 1) malformed("unknown dict order flag");
    if (ordered == 0) return;
    // The same key objects, in insertion order: a permutation of the keys.
    Ref original = check_ref(PyList_New(node.arity));
    std::vector<bool> seen(static_cast<size_t>(node.arity), false);
    for (Py_ssize_t i = 0; i < node.arity; ++i) {
      Py_ssize_t index = in.size(static_cast<size_t>(node.arity) - 1, "a dict key position");
      if (seen[static_cast<size_t>(index)]) malformed("a dict key order repeats a key");
      seen[static_cast<size_t>(index)] = true;
      PyList_SET_ITEM(original.get(), i, Py_NewRef(PyList_GET_ITEM(keys, index)));
    }
    node.original_keys = original;
  }
  void deque() { node.node_data = read_value(in, hooks, "type in a deque maxlen", 0); }
  void tuple_class() {
    bool named = node.kind == NodeKind::NamedTuple;
    if (in.byte() != 'g') {
      malformed(named ? "a namedtuple node needs its type"
                      : "a PyStructSequence node needs its type");
    }
    node.node_data = read_global(in, hooks, named ? "namedtuple type" : "PyStructSequence type");
  }
  void custom() {
    if (in.byte() != 'g') malformed("a custom node needs its type");
    // The registration's namespace follows the type: it goes into the error message.
    Reader ahead = in;
    read_str(ahead);
    read_str(ahead);
    ahead.byte();
    node.registration_ns = ahead.text();
    std::string role =
        "custom node type registered in " +
        (node.registration_ns.empty() ? std::string("the global namespace")
                                      : "namespace " + quoted(node.registration_ns)) +
        " by the sender";
    node.custom_type = read_global(in, hooks, role);
    in.text();  // the namespace, read above
    node.node_data = read_value(in, hooks, "type in custom node metadata", 0);
    uint8_t has_entries = in.byte();
    if (has_entries > 1) malformed("unknown entries flag");
    if (has_entries == 1) {
      std::vector<Ref> entries;
      entries.reserve(static_cast<size_t>(node.arity));
      for (Py_ssize_t i = 0; i < node.arity; ++i) {
        entries.push_back(read_value(in, hooks, "type in a path entry", 0));
      }
      node.node_entries = sequence_of<false>(entries);
    }
  }
  [[noreturn]] void unknown() { malformed("unknown node kind"); }
};

// Checks each decoded node against this interpreter, in whose registry (as it is when
// decoding starts) it binds the custom nodes.
class NodeBinder {
 public:
  NodeBinder(const TreeSpec& spec, PyObject* missing_error)
      : spec_(spec), missing_error_(missing_error), table_(view_.snapshot().table_for(spec.ns())) {}

  // `item`: what `node` was moved from, with the custom type and its registration namespace.
  void bind(Node& node, const PendingNode& item) {
    switch (node.kind) {
      case NodeKind::Leaf:
      case NodeKind::Tuple:
      case NodeKind::List:
        return;
      case NodeKind::None:
        if (spec_.none_is_leaf()) malformed("None is a leaf in this structure");
        return;
      case NodeKind::Dict:
      case NodeKind::OrderedDict:
        return check_keys(node.node_data.get(), node.arity);
      case NodeKind::DefaultDict:
        return check_defaultdict(node);
      case NodeKind::Deque:
        return check_deque(node);
      case NodeKind::NamedTuple:
      case NodeKind::StructSequence:
        return check_tuple_class(node);
      case NodeKind::Custom:
        return bind_custom(node, item);
      default:
        malformed("unknown node kind");
    }
  }

 private:
  static void check_defaultdict(const Node& node) {
    PyObject* factory = PyTuple_GET_ITEM(node.node_data.get(), 0);
    if (factory != Py_None && !PyCallable_Check(factory)) {
      malformed("a defaultdict's default_factory must be callable or None");
    }
    check_keys(PyTuple_GET_ITEM(node.node_data.get(), 1), node.arity);
  }

  static void check_deque(const Node& node) {
    PyObject* maxlen = node.node_data.get();
    switch (maxlen == Py_None ? MaxlenProblem::Fits
                              : deque_maxlen_problem(maxlen, node.arity, true)) {
      case MaxlenProblem::Fits:
        return;
      case MaxlenProblem::NotAnInt:
        malformed("a deque maxlen must be an int or None");
      case MaxlenProblem::OutOfRange:
        malformed("a deque maxlen is out of range");
      case MaxlenProblem::BelowArity:
        malformed("a deque has more children than its maxlen");
    }
  }

  void check_tuple_class(const Node& node) {
    PyObject* cls = node.node_data.get();
    bool namedtuple = node.kind == NodeKind::NamedTuple;
    // (class, arity and kind), checked once per decoding
    std::pair<PyObject*, Py_ssize_t> check{cls, 2 * node.arity + (namedtuple ? 1 : 0)};
    if (std::find(checked_classes_.begin(), checked_classes_.end(), check) !=
        checked_classes_.end()) {
      return;
    }
    const BuiltinTypes& builtins = view_.shard().builtins();
    if (!PyType_Check(cls) ||
        (namedtuple ? !is_namedtuple_class(cls, builtins) : !is_structseq_class(cls, builtins))) {
      raise(PyExc_TypeError, "optree.parallel.unpack: " + repr_of(cls) + " is not a " +
                                 (namedtuple ? "namedtuple" : "PyStructSequence") +
                                 " class in this interpreter");
    }
    Ref fields = namedtuple ? namedtuple_fields(cls) : structseq_fields(cls);
    if (PyTuple_GET_SIZE(fields.get()) != node.arity) {
      raise(PyExc_TypeError, "optree.parallel.unpack: " + type_path(cls) + " has " +
                                 std::to_string(PyTuple_GET_SIZE(fields.get())) +
                                 " fields in this interpreter, and " + std::to_string(node.arity) +
                                 " in the sender's tree");
    }
    checked_classes_.push_back(check);
  }

  void bind_custom(Node& node, const PendingNode& item) {
    PyObject* cls = item.custom_type.get();
    if (!PyType_Check(cls)) {
      raise(PyExc_TypeError, "optree.parallel.unpack: the custom node type " + repr_of(cls) +
                                 " is not a class in this interpreter");
    }
    const RegistrationPtr* registration = table_.find(reinterpret_cast<PyTypeObject*>(cls));
    if (registration == nullptr) not_registered(cls, item.registration_ns);
    node.custom = *registration;
  }

  [[noreturn]] void not_registered(PyObject* cls, const std::string& registration_ns) {
    std::string where = spec_.ns().empty() ? std::string("the global namespace")
                                           : "namespace " + quoted(spec_.ns());
    std::string sender_ns =
        registration_ns.empty() ? std::string() : ", namespace=" + quoted(registration_ns);
    PyErr_SetString(missing_error_,
                    ("optree.parallel.unpack: the custom node type " + type_path(cls) +
                     " is not registered in this interpreter (looked up in " + where +
                     "); registries are per interpreter, so this one must register it too, e.g. "
                     "optree.register_pytree_node(" +
                     type_path(cls) + ", ..." + sender_ns +
                     "), typically by importing the module that registers it")
                        .c_str());
    throw_python_error();
  }

  const TreeSpec& spec_;
  PyObject* missing_error_;
  RegistryView view_;
  const TypeTable& table_;
  std::vector<std::pair<PyObject*, Py_ssize_t>> checked_classes_;  // (class, 2 * arity + kind)
};

}  // namespace

TreeSpec decode_structure(PyObject* encoding, PyObject* resolve, PyObject* loads,
                          PyObject* missing_error) {
  if (!PyBytes_CheckExact(encoding)) {
    raise(PyExc_TypeError, "optree.parallel: a structure encoding must be bytes");
  }
  Ref hold = Ref::borrow(encoding);  // decoding runs Python code
  Reader in(PyBytes_AS_STRING(encoding), static_cast<size_t>(PyBytes_GET_SIZE(encoding)));
  if (in.remaining() < kMagicSize ||
      std::memcmp(in.take(kMagicSize - 1), kMagic, kMagicSize - 1) != 0) {
    malformed("not an optree structure encoding");
  }
  if (uint8_t version = in.byte(); version != kMagic[kMagicSize - 1]) {
    malformed("a structure encoding of version " + std::to_string(version) +
              " (by another version of optree?); this version reads version " +
              std::to_string(kMagic[kMagicSize - 1]));
  }
  TreeSpec spec;
  uint8_t flags = in.byte();
  if (flags > 1) malformed("unknown flags");
  TreeSpecAccess::none_is_leaf(spec) = (flags & 1) != 0;
  TreeSpecAccess::ns(spec) = in.text();
  // Every node takes at least one byte.
  Py_ssize_t num_nodes = in.size(in.remaining(), "the node count");
  if (num_nodes == 0) malformed("there are no nodes");
  DecodeHooks hooks{resolve, loads, {}};

  // 1. Read everything, running the Python hooks (imports, unpickling).
  std::vector<PendingNode> pending(static_cast<size_t>(num_nodes));
  for (PendingNode& node : pending) {
    uint8_t kind = in.byte();
    if (kind >= static_cast<uint8_t>(NodeKind::FrozenDict)) malformed("unknown node kind");
    node.kind = static_cast<NodeKind>(kind);
    NodeDecoder decoder{in, hooks, node, num_nodes};
    code_node(decoder, node.kind);
  }
  if (!in.done()) malformed("there are bytes after the last node");

  // 2. Check the tree and bind custom nodes to this interpreter's registrations.
  NodeBinder binder(spec, missing_error);
  std::vector<size_t> roots;  // of the parentless subtrees
  std::vector<Node>& nodes = TreeSpecAccess::nodes(spec);
  nodes.reserve(pending.size());
  for (PendingNode& item : pending) {
    Node node = std::move(item);
    if (static_cast<size_t>(node.arity) > roots.size()) {
      malformed("a node has more children than precede it");
    }
    SubtreeSize size = adopt_children(nodes, roots, nodes.size(), node.kind, node.arity);
    node.num_leaves = size.leaves;
    node.num_nodes = size.nodes;
    binder.bind(node, item);
    nodes.push_back(std::move(node));
  }
  if (roots.size() != 1) malformed("the nodes do not form a single tree");
  return spec;
}

namespace {

// Same items: by identity first (trees of one shape share their key objects), else by value.
bool same_keys(PyObject* a, PyObject* b) {
  if (a == b) return true;
  if (a == nullptr || b == nullptr) return false;
  Py_ssize_t n = PyList_GET_SIZE(a);
  if (n != PyList_GET_SIZE(b)) return false;
  for (Py_ssize_t i = 0; i < n; ++i) {
    if (PyList_GET_ITEM(a, i) != PyList_GET_ITEM(b, i)) return same_value(a, b, 0);
  }
  return true;
}

}  // namespace

bool same_structure(const TreeSpec& a, const TreeSpec& b) {
  if (&a == &b) return true;
  a.root();
  b.root();
  if (a.none_is_leaf() != b.none_is_leaf() || a.ns() != b.ns() ||
      a.nodes().size() != b.nodes().size()) {
    return false;
  }
  const Node* x = a.nodes().data();
  const Node* y = b.nodes().data();
  for (const Node* end = x + a.nodes().size(); x != end; ++x, ++y) {
    if (x->kind != y->kind || x->arity != y->arity) return false;
    switch (x->kind) {
      case NodeKind::Leaf:
      case NodeKind::None:
      case NodeKind::Tuple:
      case NodeKind::List:
        continue;
      case NodeKind::Dict:
      case NodeKind::OrderedDict:
        if (!same_keys(x->node_data.get(), y->node_data.get()) ||
            !same_keys(x->original_keys.get(), y->original_keys.get())) {
          return false;
        }
        continue;
      case NodeKind::DefaultDict:
        if (!same_value(PyTuple_GET_ITEM(x->node_data.get(), 0),
                        PyTuple_GET_ITEM(y->node_data.get(), 0), 0) ||
            !same_keys(PyTuple_GET_ITEM(x->node_data.get(), 1),
                       PyTuple_GET_ITEM(y->node_data.get(), 1)) ||
            !same_keys(x->original_keys.get(), y->original_keys.get())) {
          return false;
        }
        continue;
      case NodeKind::NamedTuple:
      case NodeKind::StructSequence:
        if (x->node_data.get() != y->node_data.get()) return false;  // types: by identity
        continue;
      case NodeKind::Custom:
        if (x->custom->type != y->custom->type || x->custom->ns != y->custom->ns ||
            !same_value(x->node_data.get(), y->node_data.get(), 0) ||
            !same_value(x->node_entries.get(), y->node_entries.get(), 0)) {
          return false;
        }
        continue;
      default:
        if (!same_value(x->node_data.get(), y->node_data.get(), 0)) return false;
        continue;
    }
  }
  return true;
}

bool registrations_current(const TreeSpec& spec) {
  RegistryView view;
  const TypeTable& table = view.snapshot().table_for(spec.ns());
  for (const Node& node : spec.nodes()) {
    if (node.kind != NodeKind::Custom) continue;
    const RegistrationPtr* now = table.find(reinterpret_cast<PyTypeObject*>(node.custom->type));
    if (now == nullptr || now->get() != node.custom.get()) return false;
  }
  return true;
}

// ------------------------------------------------------------------------------ leaves

namespace {

// The leaf encoding of `n` objects that the caller keeps alive.
Ref encode_items(PyObject* const* items, Py_ssize_t n, PyObject* dumps) {
  Writer out;
  out.reserve(static_cast<size_t>(n) * 9 + 16);
  out.varint(static_cast<uint64_t>(n));
  std::vector<PyObject*> objects;  // borrowed from items
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* leaf = items[i];
    if (write_scalar(out, leaf)) continue;
    PyTypeObject* type = Py_TYPE(leaf);
    if (type == &PyBytes_Type && PyBytes_GET_SIZE(leaf) < kInlineBytesLimit) {
      out.byte('b');
      out.text(PyBytes_AS_STRING(leaf), PyBytes_GET_SIZE(leaf));
      continue;
    }
    if (type == &PyBytes_Type || type == &PyMemoryView_Type) {
      out.byte('o');
      objects.push_back(leaf);
      continue;
    }
    try {
      write_pickle(out, leaf, dumps);
    } catch (const PythonError&) {
      // Say which leaf: the pickler's message names only its type.
      add_note("optree.parallel: while pickling leaf " + std::to_string(i) + " (of type " +
               type_name(reinterpret_cast<PyObject*>(type)) + ")");
      throw;
    }
  }
  Ref data = out.bytes();
  Ref object_tuple = check_ref(PyTuple_New(static_cast<Py_ssize_t>(objects.size())));
  for (size_t i = 0; i < objects.size(); ++i) {
    PyTuple_SET_ITEM(object_tuple.get(), static_cast<Py_ssize_t>(i), Py_NewRef(objects[i]));
  }
  return check_ref(PyTuple_Pack(2, data.get(), object_tuple.get()));
}

// CPython 3.11 collects garbage inside the allocation that crosses the threshold, running
// finalizers there: Python code that could change a tree under the borrowed references of a
// walk that allocates (an OrderedDict's items, a deque's copy, the result). 3.12+ collect at the
// next bytecode boundary instead. Keeps the collector off for its lifetime, on 3.11.
class NoCollection {
 public:
#if PY_VERSION_HEX < 0x030C0000
  NoCollection() noexcept : was_enabled_(PyGC_Disable() != 0) {}
  ~NoCollection() {
    if (was_enabled_) PyGC_Enable();
  }

 private:
  bool was_enabled_;
#endif
};

// Walks `tree` against `spec` and encodes its leaves, as long as the tree is made of builtin
// nodes whose walk runs no Python code (None, tuples, lists, dicts, OrderedDicts, defaultdicts,
// deques, namedtuples) and has the very structure of `spec`. Runs no Python code during the walk
// (a tuple subclass the core has not classified before stops it); a null result as soon as
// anything differs.
class Matcher {
 public:
  Matcher(const TreeSpec& spec, bool none_is_leaf, const std::string& ns, bool insertion_ordered)
      : spec_(spec), none_is_leaf_(none_is_leaf), ns_(ns), insertion_ordered_(insertion_ordered) {}

  // The leaf encoding, or a null Ref (no exception) if the tree does not match.
  Ref run(PyObject* tree, PyObject* dumps) {
    if (spec_.nodes().empty() || spec_.none_is_leaf() != none_is_leaf_) return Ref();
    // Dicts: the spec's key order is what flatten gives under the dict order mode that made it
    // (see dict_children).
    bool insertion_ordered = view_.snapshot().dicts_insertion_ordered(ns_);
    if (insertion_ordered != insertion_ordered_) return Ref();
    Ref items;
    {
      [[maybe_unused]] NoCollection no_collection;  // until the borrowed leaves are held
      if (!walk(tree)) return Ref();
      if (!deferred_) {  // every leaf written: the encoding is complete
        Ref data = out_.bytes();
        Ref object_tuple = check_ref(PyTuple_New(static_cast<Py_ssize_t>(objects_.size())));
        for (size_t i = 0; i < objects_.size(); ++i) {
          PyTuple_SET_ITEM(object_tuple.get(), static_cast<Py_ssize_t>(i), Py_NewRef(objects_[i]));
        }
        return check_ref(PyTuple_Pack(2, data.get(), object_tuple.get()));
      }
      // Leaves to pickle: hold them all, then encode them from the start (pickling runs
      // Python).
      items = check_ref(PyTuple_New(static_cast<Py_ssize_t>(leaves_.size())));
      for (size_t i = 0; i < leaves_.size(); ++i) {
        PyTuple_SET_ITEM(items.get(), static_cast<Py_ssize_t>(i), Py_NewRef(leaves_[i]));
      }
    }
    return encode_items(&PyTuple_GET_ITEM(items.get(), 0), PyTuple_GET_SIZE(items.get()), dumps);
  }

 private:
  bool walk(PyObject* tree) {
    const std::vector<Node>& nodes = spec_.nodes();
    const TypeTable& table = view_.table_for(ns_);
    const BuiltinTypes& builtins = view_.shard().builtins();
    auto num_leaves = static_cast<size_t>(nodes.back().num_leaves);
    leaves_.reserve(num_leaves);
    out_.reserve(num_leaves * 9 + 16);
    out_.varint(num_leaves);
    agenda_.emplace_back(tree, static_cast<Py_ssize_t>(nodes.size()) - 1);
    while (!agenda_.empty()) {
      auto [obj, index] = agenda_.back();
      agenda_.pop_back();
      const Node& node = nodes[static_cast<size_t>(index)];
      PyTypeObject* type = Py_TYPE(obj);
      switch (node.kind) {
        case NodeKind::Leaf:
          if (!is_leaf(obj, type, table, builtins)) return false;
          leaves_.push_back(obj);
          if (!deferred_) write_leaf(obj, type);
          continue;
        case NodeKind::None:
          if (obj != Py_None || none_is_leaf_) return false;
          continue;
        case NodeKind::Tuple:
          if (type != &PyTuple_Type || PyTuple_GET_SIZE(obj) != node.arity) return false;
          push(&PyTuple_GET_ITEM(obj, 0), index, node.arity);
          continue;
        case NodeKind::NamedTuple:
          if (reinterpret_cast<PyObject*>(type) != node.node_data.get() ||
              PyTuple_GET_SIZE(obj) != node.arity || !is_namedtuple(type, table, builtins)) {
            return false;
          }
          push(&PyTuple_GET_ITEM(obj, 0), index, node.arity);
          continue;
        case NodeKind::List: {
          if (type != &PyList_Type) return false;
          PyObject* items = stable(obj);
          if (PySequence_Fast_GET_SIZE(items) != node.arity) return false;
          push(PySequence_Fast_ITEMS(items), index, node.arity);
          continue;
        }
        case NodeKind::Dict:
          if (type != &PyDict_Type || !dict_children(stable(obj), node, node.node_data.get()))
            return false;
          push(children_.data(), index, node.arity);
          continue;
        case NodeKind::OrderedDict: {
          // Its items in their dict order, the order flatten takes (PyDict_Keys): not the
          // OrderedDict's own order, which move_to_end changes alone. A list of them is a
          // snapshot on free-threaded builds too.
          if (type != builtins.ordered_dict) return false;
          PyObject* items = hold(PyDict_Items(obj));
          PyObject* keys = node.node_data.get();
          if (PyList_GET_SIZE(items) != node.arity) return false;
          children_.clear();
          for (Py_ssize_t i = 0; i < node.arity; ++i) {
            PyObject* item = PyList_GET_ITEM(items, i);
            if (!same_key(PyTuple_GET_ITEM(item, 0), PyList_GET_ITEM(keys, i))) return false;
            children_.push_back(PyTuple_GET_ITEM(item, 1));
          }
          push(children_.data(), index, node.arity);
          continue;
        }
        case NodeKind::DefaultDict: {
          if (type != builtins.default_dict) return false;
          Ref factory = check_ref(PyObject_GetAttrString(obj, "default_factory"));
          if (factory.get() != PyTuple_GET_ITEM(node.node_data.get(), 0) ||
              !dict_children(stable(obj), node, PyTuple_GET_ITEM(node.node_data.get(), 1))) {
            return false;
          }
          push(children_.data(), index, node.arity);
          continue;
        }
        case NodeKind::Deque: {
          if (type != builtins.deque) return false;
          Ref maxlen = check_ref(PyObject_GetAttrString(obj, "maxlen"));
          PyObject* items = hold(PySequence_Tuple(obj));
          if (PyTuple_GET_SIZE(items) != node.arity ||
              !same_value(maxlen.get(), node.node_data.get(), 0)) {
            return false;
          }
          push(&PyTuple_GET_ITEM(items, 0), index, node.arity);
          continue;
        }
        default:
          return false;  // custom nodes (their flatten function is Python code), structseqs
      }
    }
    return true;
  }

  // Schedules the children of the node at `index`, the first one to be walked next. A node's
  // subtrees end right before it, the last one first.
  void push(PyObject* const* items, Py_ssize_t index, Py_ssize_t arity) {
    const std::vector<Node>& nodes = spec_.nodes();
    Py_ssize_t child = index - 1;
    for (Py_ssize_t i = arity - 1; i >= 0; --i) {
      agenda_.emplace_back(items[i], child);
      child -= nodes[static_cast<size_t>(child)].num_nodes;
    }
  }

  void write_leaf(PyObject* obj, PyTypeObject* type) {
    if (write_scalar(out_, obj)) return;
    if (type == &PyBytes_Type && PyBytes_GET_SIZE(obj) < kInlineBytesLimit) {
      out_.byte('b');
      out_.text(PyBytes_AS_STRING(obj), PyBytes_GET_SIZE(obj));
    } else if (type == &PyBytes_Type || type == &PyMemoryView_Type) {
      out_.byte('o');
      objects_.push_back(obj);
    } else {
      deferred_ = true;  // to be pickled
    }
  }

  // A namedtuple class that is not registered as a custom node: checked once per type.
  bool is_namedtuple(PyTypeObject* type, const TypeTable& table, const BuiltinTypes& builtins) {
    if (std::find(namedtuple_types_.begin(), namedtuple_types_.end(), type) !=
        namedtuple_types_.end()) {
      return true;
    }
    TupleClassInfo info;
    if (table.find(type) != nullptr || !known_tuple_class(type, builtins, info) ||
        !info.namedtuple) {
      return false;
    }
    namedtuple_types_.push_back(type);
    return true;
  }

  // tuple_class_info() of a tuple subclass that the core has classified before, unchanged
  // since: classifying anew reads the class's attributes, which may run Python code (a
  // descriptor, a metaclass) that changes the tree under the borrowed references of the walk.
  // False for any other class: the walk stops there, and flatten classifies it.
  static bool known_tuple_class(PyTypeObject* type, const BuiltinTypes& builtins,
                                TupleClassInfo& info) {
    if (!Py_IS_TYPE(reinterpret_cast<PyObject*>(type), &PyType_Type) ||
        !PyType_HasFeature(type, Py_TPFLAGS_VALID_VERSION_TAG)) {
      return false;
    }
    return builtins.tuple_classes.find(__atomic_load_n(&type->tp_version_tag, __ATOMIC_ACQUIRE),
                                       info);
  }

  bool is_leaf(PyObject* obj, PyTypeObject* type, const TypeTable& table,
               const BuiltinTypes& builtins) {
    for (PyTypeObject* known : leaf_types_) {
      if (type == known) return true;
    }
    if (obj == Py_None) return none_is_leaf_;
    if (builtins.is_builtin_container(type) || table.find(type) != nullptr) {
      return false;
    }
    if (PyTuple_Check(obj)) {
      TupleClassInfo info;
      if (!known_tuple_class(type, builtins, info) || info.namedtuple || info.structseq) {
        return false;  // not a leaf, or not known without running Python code
      }
    }
    leaf_types_[next_leaf_type_++ % kLeafTypes] = type;
    return true;
  }

  // A list (or dict) as it is now: itself while no other thread can change it, else a copy.
  PyObject* stable(PyObject* obj) {
#ifdef Py_GIL_DISABLED
    return hold(PyDict_Check(obj) ? PyDict_Copy(obj) : PyList_AsTuple(obj));
#else
    return obj;
#endif
  }

  // Keeps a new reference for the length of the walk; throws if it is null.
  PyObject* hold(PyObject* obj) {
    holders_.push_back(check_ref(obj));
    return obj;
  }

  // A dict's values in treespec order (into children_), if its keys are the spec's very key
  // objects inserted in the spec's insertion order: flatten, under the dict order mode that made
  // the spec, orders the same keys the same way (sorting is a function of the keys in insertion
  // order).
  bool dict_children(PyObject* dict, const Node& node, PyObject* keys) {
    PyObject* original = node.original_keys.get();
    if (PyDict_GET_SIZE(dict) != node.arity) return false;
    PyObject* in_order = original != nullptr ? original : keys;
    children_.clear();
    Py_ssize_t position = 0;
    Py_ssize_t i = 0;
    PyObject* key = nullptr;
    PyObject* value = nullptr;
    while (PyDict_Next(dict, &position, &key, &value)) {
      if (i >= node.arity || !same_key(key, PyList_GET_ITEM(in_order, i))) return false;
      children_.push_back(value);
      ++i;
    }
    if (i != node.arity) return false;
    if (original == nullptr) return true;
    // Insertion order -> treespec order, by identity (in_order holds the spec's key objects):
    // a linear search for the small dicts of records, a sorted table for large ones.
    auto n = static_cast<size_t>(node.arity);
    by_position_.assign(n, nullptr);
    if (n <= 16) {
      for (size_t k = 0; k < n; ++k) {
        PyObject* wanted = PyList_GET_ITEM(original, static_cast<Py_ssize_t>(k));
        size_t j = 0;
        while (j < n && PyList_GET_ITEM(keys, static_cast<Py_ssize_t>(j)) != wanted) ++j;
        if (j == n) return false;
        by_position_[j] = children_[k];
      }
    } else {
      slots_.clear();
      for (size_t k = 0; k < n; ++k) {
        slots_.emplace_back(PyList_GET_ITEM(keys, static_cast<Py_ssize_t>(k)), k);
      }
      std::sort(slots_.begin(), slots_.end());
      for (size_t k = 0; k < n; ++k) {
        PyObject* wanted = PyList_GET_ITEM(original, static_cast<Py_ssize_t>(k));
        auto it = std::lower_bound(slots_.begin(), slots_.end(), std::make_pair(wanted, size_t{0}));
        if (it == slots_.end() || it->first != wanted) return false;
        by_position_[it->second] = children_[k];
      }
    }
    children_.swap(by_position_);
    return true;
  }

  // The same key object, or an equal exact str or int (say, keys of a freshly decoded JSON
  // object): comparing those runs no Python code, and flatten orders them the same way.
  static bool same_key(PyObject* key, PyObject* expected) {
    if (key == expected) return true;
    PyTypeObject* type = Py_TYPE(key);
    if (type != Py_TYPE(expected)) return false;
    if (type == &PyUnicode_Type) return PyUnicode_Compare(key, expected) == 0;
    if (type == &PyLong_Type) return PyObject_RichCompareBool(key, expected, Py_EQ) == 1;
    return false;
  }

  static constexpr size_t kLeafTypes = 4;

  const TreeSpec& spec_;
  bool none_is_leaf_;
  const std::string& ns_;
  bool insertion_ordered_;
  RegistryView view_;
  std::vector<std::pair<PyObject*, Py_ssize_t>> agenda_;  // (object, node index), borrowed
  std::vector<PyObject*> children_;
  std::vector<PyObject*> by_position_;
  std::vector<std::pair<PyObject*, size_t>> slots_;
  std::vector<PyObject*> leaves_;   // borrowed: no Python code runs while they are collected
  std::vector<PyObject*> objects_;  // borrowed from leaves_
  Writer out_;
  bool deferred_ = false;  // some leaf must be pickled
  PyTypeObject* leaf_types_[kLeafTypes] = {};
  std::vector<PyTypeObject*> namedtuple_types_;
  size_t next_leaf_type_ = 0;
  std::vector<Ref> holders_;  // copies taken on free-threaded builds
};

}  // namespace

Ref encode_leaves(PyObject* leaves, PyObject* dumps) {
  // A tuple: pickling a leaf runs Python code, which must not resize what we walk.
  Ref items =
      PyTuple_CheckExact(leaves) ? Ref::borrow(leaves) : check_ref(PySequence_Tuple(leaves));
  return encode_items(&PyTuple_GET_ITEM(items.get(), 0), PyTuple_GET_SIZE(items.get()), dumps);
}

Ref match_leaves(const TreeSpec& spec, PyObject* tree, bool none_is_leaf, const std::string& ns,
                 bool insertion_ordered, PyObject* dumps) {
  return Matcher(spec, none_is_leaf, ns, insertion_ordered).run(tree, dumps);
}

Ref decode_leaves(PyObject* data, PyObject* objects, PyObject* loads) {
  if (!PyBytes_CheckExact(data) || !PyTuple_CheckExact(objects)) {
    raise(PyExc_TypeError, "optree.parallel: leaves must be encoded as bytes and a tuple");
  }
  Ref hold_data = Ref::borrow(data);  // decoding runs Python code
  Ref hold_objects = Ref::borrow(objects);
  Reader in(PyBytes_AS_STRING(data), static_cast<size_t>(PyBytes_GET_SIZE(data)));
  Py_ssize_t n = in.size(in.remaining(), "the leaf count");
  std::vector<Ref> leaves;  // the list is made last (see sequence_of)
  leaves.reserve(static_cast<size_t>(n));
  Py_ssize_t next_object = 0;
  for (Py_ssize_t i = 0; i < n; ++i) {
    uint8_t tag = in.byte();
    if (tag == 'f') {  // the common case, without the generic path's checks
      leaves.push_back(check_ref(PyFloat_FromDouble(in.f64())));
      continue;
    }
    bool found = false;
    Ref leaf = read_scalar(tag, in, loads, found);
    if (!found) {
      if (tag != 'o') malformed("unknown leaf tag " + std::to_string(tag));
      if (next_object >= PyTuple_GET_SIZE(objects)) malformed("too few leaf objects");
      leaf = Ref::borrow(PyTuple_GET_ITEM(objects, next_object++));
    }
    leaves.push_back(std::move(leaf));
  }
  if (!in.done()) malformed("there are bytes after the last leaf");
  if (next_object != PyTuple_GET_SIZE(objects)) malformed("too many leaf objects");
  return sequence_of<true>(leaves);
}

}  // namespace optree::transfer
