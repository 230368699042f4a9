// What namedtuple and PyStructSequence classes are, by their attributes (as optree decides it),
// cached per class; and their field names.
#include "optree/introspection.h"

#include "optree/registry.h"
#include "optree/text.h"
// After Python.h, which it needs.
#include <structmember.h>

namespace optree {

namespace {

// An entry of a type's own __dict__ (not its bases'), or null. Static builtin types keep their
// dict per interpreter from 3.12 on, with tp_dict left null: ask for it.
Ref own_type_attribute(PyTypeObject* type, const char* name) {
#if PY_VERSION_HEX >= 0x030C0000
  Ref dict = Ref::steal(PyType_GetDict(type));
#else
  Ref dict = Ref::borrow(type->tp_dict);
#endif
  if (!dict) return Ref();
  return Ref::borrow(PyDict_GetItemString(dict.get(), name));
}

// Whether `cls` (a strict tuple subclass) looks like a namedtuple class.
bool has_namedtuple_attributes(PyObject* cls, const BuiltinTypes& builtins,
                               Py_ssize_t& num_fields) {
  Ref fields = Ref::steal(PyObject_GetAttr(cls, builtins.name_fields));
  if (!fields) {
    PyErr_Clear();
    return false;
  }
  if (!PyTuple_Check(fields.get())) return false;
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(fields.get()); ++i) {
    if (!PyUnicode_Check(PyTuple_GET_ITEM(fields.get(), i))) return false;
  }
  for (PyObject* method : {builtins.name_make, builtins.name_asdict}) {
    Ref attr = Ref::steal(PyObject_GetAttr(cls, method));
    if (!attr) {
      PyErr_Clear();
      return false;
    }
    if (!PyCallable_Check(attr.get())) return false;
  }
  num_fields = PyTuple_GET_SIZE(fields.get());
  return true;
}

// Whether `cls` (a strict tuple subclass) looks like a PyStructSequence class.
bool has_structseq_attributes(PyTypeObject* type) {
  // Structure sequences are final: a subclass would not be one.
  if (PyType_HasFeature(type, Py_TPFLAGS_BASETYPE)) return false;
  for (const char* name : {"n_sequence_fields", "n_fields", "n_unnamed_fields"}) {
    Ref value = own_type_attribute(type, name);
    if (!value || !PyLong_CheckExact(value.get())) return false;
  }
  return true;
}

// Whether cls(*children), for a namedtuple class, is exactly tuple.__new__(cls, children): its
// __new__ is the one collections.namedtuple generates (`lambda _cls, <fields>:
// _tuple_new(_cls, (<fields>))`, evaluated in a namespace named 'namedtuple_<typename>' whose
// _tuple_new is tuple.__new__), __init__ is object's (a no-op then), and the metaclass is type
// (checked by the caller). Unflatten then skips the Python-level __new__.
bool namedtuple_builds_like_tuple(PyObject* cls, const BuiltinTypes& builtins,
                                  Py_ssize_t num_fields) {
  auto* type = reinterpret_cast<PyTypeObject*>(cls);
  if (type->tp_init != PyBaseObject_Type.tp_init) return false;
  Ref new_func = Ref::steal(PyObject_GetAttr(cls, builtins.name_new));
  if (!new_func) {
    PyErr_Clear();
    return false;
  }
  if (!PyFunction_Check(new_func.get())) return false;
  PyObject* globals = PyFunction_GetGlobals(new_func.get());
  if (globals == nullptr || !PyDict_Check(globals)) return false;
  PyObject* module_name = PyDict_GetItemString(globals, "__name__");
  if (module_name == nullptr || !PyUnicode_Check(module_name)) return false;
  Ref prefix = Ref::steal(PyUnicode_FromString("namedtuple_"));
  if (!prefix) throw_python_error();
  Py_ssize_t starts = PyUnicode_Tailmatch(module_name, prefix.get(), 0, PY_SSIZE_T_MAX, -1);
  if (starts == -1) throw_python_error();
  if (starts == 0) return false;
  if (PyDict_GetItemString(globals, "_tuple_new") != builtins.tuple_new) return false;
  auto* code = reinterpret_cast<PyCodeObject*>(PyFunction_GetCode(new_func.get()));
  return code->co_argcount == num_fields + 1 && code->co_kwonlyargcount == 0 &&
         code->co_posonlyargcount == 0 && (code->co_flags & (CO_VARARGS | CO_VARKEYWORDS)) == 0;
}

// The type's version tag, assigning one first if it has none; 0 if CPython cannot give one.
unsigned int type_version(PyTypeObject* type, const BuiltinTypes& builtins) {
  auto valid_tag = [type]() -> unsigned int {
    if (!PyType_HasFeature(type, Py_TPFLAGS_VALID_VERSION_TAG)) return 0;
    return __atomic_load_n(&type->tp_version_tag, __ATOMIC_ACQUIRE);
  };
  unsigned int tag = valid_tag();
  if (tag != 0) return tag;
#if PY_VERSION_HEX >= 0x030C0000
  if (!PyUnstable_Type_AssignVersionTag(type)) return 0;
#else
  // A method cache lookup assigns the tag as a side effect.
  (void)_PyType_Lookup(type, builtins.name_fields);
#endif
  return valid_tag();
}

TupleClassInfo compute_tuple_class_info(PyTypeObject* type, const BuiltinTypes& builtins) {
  auto* cls = reinterpret_cast<PyObject*>(type);
  TupleClassInfo info;
  Py_ssize_t num_fields = 0;
  info.namedtuple = has_namedtuple_attributes(cls, builtins, num_fields);
  info.structseq = has_structseq_attributes(type);
  if (info.namedtuple && num_fields <= UINT16_MAX && Py_IS_TYPE(cls, &PyType_Type)) {
    info.builds_like_tuple = namedtuple_builds_like_tuple(cls, builtins, num_fields);
    info.num_fields = static_cast<uint16_t>(num_fields);
  }
  return info;
}

}  // namespace

TupleClassInfo tuple_class_info(PyTypeObject* type, const BuiltinTypes& builtins) {
  // Attribute lookups on a class also consult its metaclass, which the tag does not cover:
  // cache plain classes only.
  unsigned int tag = Py_IS_TYPE(reinterpret_cast<PyObject*>(type), &PyType_Type)
                         ? type_version(type, builtins)
                         : 0;
  TupleClassInfo info;
  if (builtins.tuple_classes.find(tag, info)) return info;
  info = compute_tuple_class_info(type, builtins);
  // Stored only if the type did not change while it was being examined.
  if (tag != 0 && type_version(type, builtins) == tag) builtins.tuple_classes.store(tag, info);
  return info;
}

namespace {

PyTypeObject* strict_tuple_subclass(PyObject* cls) {
  if (!PyType_Check(cls)) return nullptr;
  auto* type = reinterpret_cast<PyTypeObject*>(cls);
  if (type == &PyTuple_Type || !PyType_IsSubtype(type, &PyTuple_Type)) return nullptr;
  return type;
}

}  // namespace

bool is_namedtuple_class(PyObject* cls, const BuiltinTypes& builtins) {
  PyTypeObject* type = strict_tuple_subclass(cls);
  return type != nullptr && tuple_class_info(type, builtins).namedtuple;
}

bool is_namedtuple_class(PyObject* cls) {
  return is_namedtuple_class(cls, current_shard().builtins());
}

bool is_structseq_class(PyObject* cls, const BuiltinTypes& builtins) {
  PyTypeObject* type = strict_tuple_subclass(cls);
  return type != nullptr && tuple_class_info(type, builtins).structseq;
}

bool is_structseq_class(PyObject* cls) {
  return is_structseq_class(cls, current_shard().builtins());
}

PyObject* type_of(PyObject* obj) {
  return PyType_Check(obj) ? obj : reinterpret_cast<PyObject*>(Py_TYPE(obj));
}

Py_ssize_t structseq_length(PyTypeObject* type) {
  Ref value = own_type_attribute(type, "n_sequence_fields");
  if (!value) raise(PyExc_TypeError, "not a PyStructSequence type");
  Py_ssize_t n = PyLong_AsSsize_t(value.get());
  if (n == -1 && PyErr_Occurred()) throw_python_error();
  return n;
}

namespace {

// "Expected a <kind>, got <class>." for a class, "Expected an instance of <kind>, ..." otherwise.
std::string expected_of_kind(PyObject* obj, const char* kind) {
  return std::string(PyType_Check(obj) ? "Expected a " : "Expected an instance of ") + kind +
         ", got " + repr_of(obj) + ".";
}

}  // namespace

Ref namedtuple_fields(PyObject* obj) {
  PyObject* cls = type_of(obj);
  if (!is_namedtuple_class(cls)) {
    raise(PyExc_TypeError, expected_of_kind(obj, "collections.namedtuple type"));
  }
  Ref fields = check_ref(PyObject_GetAttrString(cls, "_fields"));
  // Checked again: another thread may have replaced `_fields` since the class was classified.
  if (!PyTuple_Check(fields.get())) {
    raise(PyExc_TypeError, "Expected the `_fields` of " + repr_of(cls) + " to be a tuple, got " +
                               repr_of(fields.get()) + ".");
  }
  return fields;
}

Ref structseq_fields(PyObject* obj) {
  PyObject* cls = type_of(obj);
  if (!is_structseq_class(cls)) {
    raise(PyExc_TypeError, expected_of_kind(obj, "PyStructSequence type"));
  }
  auto* type = reinterpret_cast<PyTypeObject*>(cls);
  Py_ssize_t n = structseq_length(type);
  Ref fields = check_ref(PyTuple_New(n));
  // Unnamed fields have no member descriptor; a member's offset tells its position.
  for (PyMemberDef* member = type->tp_members; member != nullptr && member->name != nullptr;
       ++member) {
    Py_ssize_t position =
        (member->offset - static_cast<Py_ssize_t>(offsetof(PyTupleObject, ob_item))) /
        static_cast<Py_ssize_t>(sizeof(PyObject*));
    if (position >= 0 && position < n && PyTuple_GET_ITEM(fields.get(), position) == nullptr) {
      PyTuple_SET_ITEM(fields.get(), position, check(PyUnicode_FromString(member->name)));
    }
  }
  for (Py_ssize_t i = 0; i < n; ++i) {
    if (PyTuple_GET_ITEM(fields.get(), i) == nullptr) {
      PyTuple_SET_ITEM(fields.get(), i, check(PyUnicode_FromString(PyStructSequence_UnnamedField)));
    }
  }
  return fields;
}

}  // namespace optree
