// What optree's registration functions refuse, and what they warn about, before and after the
// registry itself (Shard) takes a registration.
#include <string>

#include "optree/common.h"
#include "optree/introspection.h"
#include "optree/registry.h"
#include "optree/text.h"

namespace optree {

namespace {

// Container types whose nodes the core builds in: they cannot be registered or unregistered.
bool is_builtin_node_type(PyObject* type, const BuiltinTypes& builtins) {
  auto* t = reinterpret_cast<PyTypeObject*>(type);
  return t == Py_TYPE(Py_None) || builtins.is_builtin_container(t);
}

// How optree names the builtin node kind that a namedtuple or PyStructSequence class has
// without a registration of its own; null for any other class.
const char* builtin_family(PyObject* type, const BuiltinTypes& builtins) {
  if (is_structseq_class(type, builtins)) return "a class of `PyStructSequence`";
  if (is_namedtuple_class(type, builtins)) return "a subclass of `collections.namedtuple`";
  return nullptr;
}

void check_registrable(PyObject* type, const BuiltinTypes& builtins, const char* action) {
  if (!PyType_Check(type)) raise(PyExc_TypeError, "Expected a class, got " + repr_of(type) + ".");
  if (is_builtin_node_type(type, builtins)) {
    raise(PyExc_ValueError,
          "PyTree type " + repr_of(type) + " is a built-in type and cannot be " + action + ".");
  }
}

}  // namespace

void register_node(PyObject* type, PyObject* flatten, PyObject* unflatten,
                   PyObject* path_entry_type, const std::string& ns, PyObject* field_layout) {
  Shard& shard = current_shard();
  check_registrable(type, shard.builtins(), "re-registered");
  if (PyCallable_Check(flatten) == 0) {
    raise(PyExc_TypeError, "Expected a callable flatten function, got " + repr_of(flatten) + ".");
  }
  if (PyCallable_Check(unflatten) == 0) {
    raise(PyExc_TypeError,
          "Expected a callable unflatten function, got " + repr_of(unflatten) + ".");
  }
  const char* family = builtin_family(type, shard.builtins());
  shard.register_node(type, flatten, unflatten, path_entry_type, ns, field_layout);
  if (family == nullptr) return;
  // Warned only once the registration stands (a rejected one overrides nothing); a warning
  // turned into an error undoes it.
  std::string message = "PyTree type " + repr_of(type) + " is " + family +
                        ", which is already registered in the global namespace. Override it "
                        "with custom flatten/unflatten functions";
  if (!ns.empty()) message += " in namespace " + namespace_repr(ns);
  message += ".";
  if (PyErr_WarnEx(PyExc_UserWarning, message.c_str(), 2) == 0) return;
  {
    SetAsideError raised;
    try {
      shard.unregister_node(type, ns);
    } catch (const PythonError&) {
      PyErr_Clear();
    }
  }
  throw_python_error();
}

void unregister_node(PyObject* type, const std::string& ns) {
  Shard& shard = current_shard();
  check_registrable(type, shard.builtins(), "unregistered");
  const char* family = builtin_family(type, shard.builtins());
  try {
    shard.unregister_node(type, ns);
  } catch (const PythonError&) {
    if (family == nullptr || !PyErr_ExceptionMatches(PyExc_ValueError)) throw;
    PyErr_Clear();
    raise(PyExc_ValueError, "PyTree type " + repr_of(type) + " is " + family +
                                ", which is not explicitly registered in " + namespace_phrase(ns) +
                                ".");
  }
}

}  // namespace optree
