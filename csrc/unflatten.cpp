// Rebuilding containers from children: unflatten, and the per-kind constructor it shares with
// the other rebuilding algorithms. flatten.cpp holds the matching flatten logic.
#include <algorithm>
#include <bit>
#include <memory>
#include <utility>
#include <vector>

#include "internal.h"
#include "optree/introspection.h"
#include "optree/treespec.h"

namespace optree {

namespace {

Ref list_of(PyObject* const* children, Py_ssize_t n) {
  Ref list = check_ref(PyList_New(n));
  for (Py_ssize_t i = 0; i < n; ++i) PyList_SET_ITEM(list.get(), i, Py_NewRef(children[i]));
  return list;
}

// For each key of `original_keys`, the position of the very same object in `keys`; false if
// some key is not found by identity (e.g. a treespec unpickled from separate copies).
bool positions_by_identity(PyObject* keys, PyObject* original_keys,
                           std::vector<Py_ssize_t>& positions) {
  Py_ssize_t n = PyList_GET_SIZE(keys);
  if (PyList_GET_SIZE(original_keys) != n) return false;
  struct Slot {
    PyObject* key;
    Py_ssize_t position;
  };
  size_t mask = std::bit_ceil(static_cast<size_t>(2 * n + 1)) - 1;
  std::vector<Slot> table(mask + 1, Slot{nullptr, 0});
  auto slot_of = [&](PyObject* key) -> Slot& {
    size_t index = (reinterpret_cast<uintptr_t>(key) >> 4) & mask;
    while (table[index].key != nullptr && table[index].key != key) index = (index + 1) & mask;
    return table[index];
  };
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* key = PyList_GET_ITEM(keys, i);
    slot_of(key) = Slot{key, i};
  }
  positions.resize(static_cast<size_t>(n));
  for (Py_ssize_t i = 0; i < n; ++i) {
    Slot& slot = slot_of(PyList_GET_ITEM(original_keys, i));
    if (slot.key == nullptr) return false;
    positions[static_cast<size_t>(i)] = slot.position;
  }
  return true;
}

// Fills `target` with keys -> children, in the original insertion order when it was recorded.
void fill_mapping(PyObject* target, PyObject* keys, PyObject* original_keys,
                  PyObject* const* children) {
  // Exact dicts skip the generic item assignment; other mappings get their own __setitem__.
  bool exact = PyDict_CheckExact(target);
  auto set = [target, exact](PyObject* key, PyObject* value) {
    check_int(exact ? PyDict_SetItem(target, key, value) : PyObject_SetItem(target, key, value));
  };
  Py_ssize_t n = PyList_GET_SIZE(keys);
  if (original_keys != nullptr) {
    std::vector<Py_ssize_t> positions;
    if (positions_by_identity(keys, original_keys, positions)) {
      for (Py_ssize_t i = 0; i < n; ++i) {
        set(PyList_GET_ITEM(original_keys, i), children[positions[static_cast<size_t>(i)]]);
      }
      return;
    }
    // Placeholders in insertion order fix each key's position; the values then replace them
    // in place.
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(original_keys); ++i) {
      set(PyList_GET_ITEM(original_keys, i), Py_None);
    }
  }
  for (Py_ssize_t i = 0; i < n; ++i) set(PyList_GET_ITEM(keys, i), children[i]);
}

// The __init__ function that calling `type` runs after object.__new__, when that is all
// calling it does: a plain metaclass call, object's __new__, and a Python function as
// __init__ (what a dataclass has). Null otherwise.
Ref python_init_of(PyTypeObject* type, const BuiltinTypes& types) {
  if (Py_TYPE(type)->tp_call != PyType_Type.tp_call || type->tp_new != PyBaseObject_Type.tp_new) {
    return {};
  }
#if PY_VERSION_HEX >= 0x030D0000
  Ref init = Ref::steal(_PyType_LookupRef(type, types.name_init));
#else
  Ref init = Ref::borrow(_PyType_Lookup(type, types.name_init));
#endif
  if (!init || !PyFunction_Check(init.get())) return {};
  return init;
}

// type(*args[0:0], **dict(zip(kwnames, args))) as the type call does it (object.__new__, then
// __init__, which must return None), with __init__ called through vectorcall: the type call
// turns the keywords into a dict and __init__ turns the dict back. args[-1] is free to use.
Ref construct(PyTypeObject* type, PyObject* init, PyObject** args, PyObject* kwnames,
              const BuiltinTypes& types) {
  Ref self = check_ref(type->tp_new(type, types.empty_tuple, nullptr));
  args[-1] = self.get();
  Ref result = check_ref(PyObject_Vectorcall(init, args - 1, 1, kwnames));
  if (result.get() != Py_None) {
    PyErr_Format(PyExc_TypeError, "__init__() should return None, not '%.200s'",
                 Py_TYPE(result.get())->tp_name);
    throw_python_error();
  }
  return self;
}

// What the unflatten_func of a field-layout registration returns (see FieldLayout), without
// calling it: the class called with the same keywords. Null (no exception set) when the node
// is not one the layout's flatten made (a node built from other metadata), which the
// registered unflatten_func then rebuilds.
Ref build_from_fields(const Registration& registration, PyObject* metadata,
                      PyObject* const* children, Py_ssize_t n, LazyBuiltins& builtins) {
  PyObject* keywords = FieldLayout::part(registration, FieldLayout::Keywords);
  PyObject* metadata_keywords = FieldLayout::part(registration, FieldLayout::MetadataKeywords);
  Py_ssize_t num_metadata = PyTuple_GET_SIZE(metadata_keywords);
  if (n + num_metadata != PyTuple_GET_SIZE(keywords) || !PyTuple_CheckExact(metadata) ||
      PyTuple_GET_SIZE(metadata) != num_metadata) {
    return {};
  }
  // One slot before the arguments for PY_VECTORCALL_ARGUMENTS_OFFSET.
  constexpr Py_ssize_t kOnStack = 16;
  PyObject* on_stack[kOnStack + 1];
  std::unique_ptr<PyObject*[]> on_heap;
  PyObject** slots = on_stack;
  if (n + num_metadata > kOnStack) {
    on_heap.reset(new PyObject*[static_cast<size_t>(n + num_metadata + 1)]);
    slots = on_heap.get();
  }
  PyObject** args = slots + 1;
  for (Py_ssize_t i = 0; i < n; ++i) args[i] = children[i];
  for (Py_ssize_t i = 0; i < num_metadata; ++i) {
    PyObject* pair = PyTuple_GET_ITEM(metadata, i);
    if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2) return {};
    PyObject* keyword = PyTuple_GET_ITEM(pair, 0);
    PyObject* expected = PyTuple_GET_ITEM(metadata_keywords, i);
    if (keyword != expected &&
        !(PyUnicode_CheckExact(keyword) && PyUnicode_Compare(keyword, expected) == 0)) {
      return {};
    }
    args[n + i] = PyTuple_GET_ITEM(pair, 1);
  }
  // The metadata tuple holds the values it lends to the call.
  Ref hold = Ref::borrow(metadata);
  PyObject* kwnames = PyTuple_GET_SIZE(keywords) > 0 ? keywords : nullptr;
  auto* type = reinterpret_cast<PyTypeObject*>(registration.type);
  if (Ref init = python_init_of(type, builtins.get())) {
    return construct(type, init.get(), args, kwnames, builtins.get());
  }
  return check_ref(PyObject_Vectorcall(
      registration.type, args, static_cast<size_t>(0) | PY_VECTORCALL_ARGUMENTS_OFFSET, kwnames));
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
      Ref dict = check_ref(_PyDict_NewPresized(n));
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
      PyObject* cls = node.node_data.get();
      const BuiltinTypes& types = builtins.get();
      if (Py_IS_TYPE(cls, &PyType_Type)) {
        TupleClassInfo info = tuple_class_info(reinterpret_cast<PyTypeObject*>(cls), types);
        if (info.builds_like_tuple && info.num_fields == n) {
          // What the class's own (generated) __new__ would do, minus its Python frame.
          PyObject* call_args[] = {cls, args.get()};
          return check_ref(PyObject_Vectorcall(types.tuple_new, call_args, 2, nullptr));
        }
      }
      return check_ref(PyObject_Call(cls, args.get(), nullptr));
    }
    case NodeKind::StructSequence: {
      Ref args = tuple_of(children, n);
      return check_ref(PyObject_CallOneArg(node.node_data.get(), args.get()));
    }
    case NodeKind::Custom: {
      if (node.custom->field_layout != nullptr) {
        if (Ref built =
                build_from_fields(*node.custom, node.node_data.get(), children, n, builtins)) {
          return built;
        }
      }
      Ref args = tuple_of(children, n);
      PyObject* call_args[] = {node.node_data.get(), args.get()};
      return check_ref(PyObject_Vectorcall(node.custom->unflatten_func, call_args, 2, nullptr));
    }
    case NodeKind::FrozenDict:
    case NodeKind::NumKinds:
      break;
  }
  raise(PyExc_SystemError, "unsupported node kind");
}

namespace {

enum class Source { Tuple, SharedList, Iterator };

PyObject* next_of_iterator(void* iterator) {
  // PyIter_Next(), minus its call overhead on every leaf.
  auto* object = static_cast<PyObject*>(iterator);
  return Py_TYPE(object)->tp_iternext(object);
}

// The rebuild of unflatten(): from the items of a tuple or a list (`leaves_object`), or from
// the leaves `next` produces (Source::Iterator).
Ref rebuild_from(const TreeSpec& spec, Source source, PyObject* leaves_object,
                 TreeSpec::LeafProducer next, void* context);

}  // namespace

Ref TreeSpec::unflatten(LeafProducer next, void* context) const {
  root();  // raises if uninitialized
  return rebuild_from(*this, Source::Iterator, nullptr, next, context);
}

Ref TreeSpec::unflatten(PyObject* leaves) const {
  root();  // raises if uninitialized

  // A list of leaves may change under us while Python code runs (constructors, key hashing,
  // finalizers): it is read item by item with its current size. Any other iterable is read
  // lazily and one item ahead, as optree's iteration (a pybind11 iterator) does: the first item
  // when the first leaf is reached, the next one as soon as a leaf takes the current one, and
  // once more before a leaf or the end when the last read found no item (an iterator may go
  // on after a StopIteration: map() does when its function raises one). An endless iterator is
  // not drained (num_leaves + 1 items are read), and the constructors run interleaved with the
  // iteration, in the same order as optree's.
  Ref sequence;
  Source source;
  if (PyTuple_CheckExact(leaves)) {
    sequence = Ref::borrow(leaves);
    source = Source::Tuple;
  } else if (PyList_CheckExact(leaves)) {
    sequence = Ref::borrow(leaves);
    source = Source::SharedList;
  } else {
    sequence = check_ref(PyObject_GetIter(leaves));
    source = Source::Iterator;
  }
  Py_ssize_t expected = num_leaves();
  if (source != Source::Iterator) {
    Py_ssize_t num_given = PySequence_Fast_GET_SIZE(sequence.get());
    if (num_given < expected) {
      raise(PyExc_ValueError,
            "Too few leaves for PyTreeSpec; expected: " + std::to_string(expected) +
                ", got: " + std::to_string(num_given) + ".");
    }
    if (num_given > expected) {
      raise(PyExc_ValueError,
            "Too many leaves for PyTreeSpec; expected: " + std::to_string(expected) + ".");
    }
    return rebuild_from(*this, source, sequence.get(), nullptr, nullptr);
  }
  return rebuild_from(*this, source, nullptr, next_of_iterator, sequence.get());
}

namespace {

Ref rebuild_from(const TreeSpec& spec, Source source, PyObject* leaves_object,
                 TreeSpec::LeafProducer next, void* context) {
  const std::vector<Node>& nodes = spec.nodes();
  Py_ssize_t expected = spec.num_leaves();
  // Owned references of the subtrees built so far; the top `arity` are a node's children.
  // Small trees (the common case of per-call overhead) keep them on the stack.
  constexpr size_t kOnStack = 32;
  PyObject* on_stack[kOnStack];
  std::unique_ptr<PyObject*[]> on_heap;
  if (nodes.size() > kOnStack) on_heap.reset(new PyObject*[nodes.size()]);
  PyObject** const bottom = on_heap ? on_heap.get() : on_stack;
  PyObject** top = bottom;
  struct Cleanup {
    PyObject** const& bottom;
    PyObject**& top;
    ~Cleanup() {
      while (top != bottom) Py_DECREF(*--top);
    }
  } cleanup{bottom, top};
  LazyBuiltins builtins;
  Ref ahead;  // Iterator: the item read ahead, null when the last read found none
  auto read_ahead = [&] {
    ahead = Ref::steal(next(context));
    if (!ahead && PyErr_Occurred()) [[unlikely]] {
      if (!PyErr_ExceptionMatches(PyExc_StopIteration)) throw_python_error();
      PyErr_Clear();
    }
  };
  // How a pybind11 iterator compares with its end: with no item at hand, it reads one first.
  auto at_end = [&] {
    if (!ahead) read_ahead();
    return !ahead;
  };
  // One loop per source, so that reading a leaf is a load (and an increment).
  auto rebuild = [&]<Source kSource>() {
    Py_ssize_t leaf_index = 0;
    PyObject** items = nullptr;
    if constexpr (kSource != Source::Iterator) items = PySequence_Fast_ITEMS(leaves_object);
    for (const Node& node : nodes) {
      if (node.kind == NodeKind::Leaf) {
        PyObject* leaf;
        if constexpr (kSource == Source::Tuple) {
          leaf = Py_NewRef(items[leaf_index]);
        } else if constexpr (kSource == Source::Iterator) {
          if (at_end()) [[unlikely]] {
            raise(PyExc_ValueError,
                  "Too few leaves for PyTreeSpec; expected: " + std::to_string(expected) +
                      ", got: " + std::to_string(leaf_index) + ".");
          }
          // Stored first: the read ahead may raise, and the leaf is then released with the rest.
          *top++ = ahead.release();
          ++leaf_index;
          read_ahead();
          continue;
        } else {
#ifdef Py_GIL_DISABLED
          // Other threads may change the list meanwhile: take each item under its lock.
          leaf = PyList_GetItemRef(leaves_object, leaf_index);
          if (leaf == nullptr) [[unlikely]] {
            if (!PyErr_ExceptionMatches(PyExc_IndexError)) throw_python_error();
            PyErr_Clear();
#else
          leaf = leaf_index < PyList_GET_SIZE(leaves_object)
                     ? Py_NewRef(PyList_GET_ITEM(leaves_object, leaf_index))
                     : nullptr;
          if (leaf == nullptr) [[unlikely]] {
#endif
            raise(PyExc_ValueError,
                  "Too few leaves for PyTreeSpec; expected: " + std::to_string(expected) +
                      ", got: " + std::to_string(PyList_GET_SIZE(leaves_object)) + ".");
          }
        }
        ++leaf_index;
        *top++ = leaf;
        continue;
      }
      PyObject** first = top - node.arity;
      PyObject* built;
      if (node.kind == NodeKind::Tuple || node.kind == NodeKind::List) {
        // The new container takes the references over.
        bool is_tuple = node.kind == NodeKind::Tuple;
        built = check(is_tuple ? PyTuple_New(node.arity) : PyList_New(node.arity));
        PyObject** slots = is_tuple ? reinterpret_cast<PyTupleObject*>(built)->ob_item
                                    : reinterpret_cast<PyListObject*>(built)->ob_item;
        for (Py_ssize_t i = 0; i < node.arity; ++i) slots[i] = first[i];
      } else {
        built = make_node(node, first, builtins).release();
        for (PyObject** child = first; child != top; ++child) Py_DECREF(*child);
      }
      top = first;
      *top++ = built;
    }
  };
  switch (source) {
    case Source::Tuple:
      rebuild.template operator()<Source::Tuple>();
      break;
    case Source::Iterator:
      rebuild.template operator()<Source::Iterator>();
      break;
    case Source::SharedList:
      rebuild.template operator()<Source::SharedList>();
      break;
  }
  bool too_many = false;
  if (source == Source::SharedList) {
    too_many = PyList_GET_SIZE(leaves_object) > expected;
  } else if (source == Source::Iterator) {
    too_many = !at_end();
  }
  if (too_many) [[unlikely]] {
    raise(PyExc_ValueError,
          "Too many leaves for PyTreeSpec; expected: " + std::to_string(expected) + ".");
  }
  return Ref::steal(*--top);
}

}  // namespace

}  // namespace optree
