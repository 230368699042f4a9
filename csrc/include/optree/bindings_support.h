// Small C-level helpers of the Cython bindings (optree/_C.pyx) that Cython cannot express
// itself: slot calls without the protocol's fallbacks, and build-time flags.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

namespace optree {

// The truth of `value` by its type's __bool__ slot: 0 or 1, or -1 (no exception set) if the
// type has no such slot or it fails. Only True and False are bools to optree; it also takes
// None and anything with this slot (numbers, numpy.bool_), never truth by __len__.
inline int bool_slot(PyObject* value) {
  PyNumberMethods* number = Py_TYPE(value)->tp_as_number;
  if (number == nullptr || number->nb_bool == nullptr) return -1;
  int result = number->nb_bool(value);
  if (result < 0) {
    PyErr_Clear();
    return -1;
  }
  return result != 0;
}

// type.__new__(type) for a type whose tp_new takes no arguments.
inline PyObject* new_instance(PyTypeObject* type) {
  PyObject* empty = PyTuple_New(0);
  if (empty == nullptr) return nullptr;
  PyObject* result = type->tp_new(type, empty, nullptr);
  Py_DECREF(empty);
  return result;
}

inline PyObject* const* tuple_items(PyObject* tuple) {
  return reinterpret_cast<PyTupleObject*>(tuple)->ob_item;
}

#ifdef Py_GIL_DISABLED
inline constexpr bool kGilDisabled = true;
#else
inline constexpr bool kGilDisabled = false;
#endif
#ifdef Py_DEBUG
inline constexpr bool kPyDebug = true;
#else
inline constexpr bool kPyDebug = false;
#endif

}  // namespace optree
