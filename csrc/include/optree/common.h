// Shared low-level helpers of the core: owned references, error raising, new str and tuple
// objects. Text of Python objects for messages is in text.h.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstdint>
#include <exception>
#include <new>
#include <string>
#include <utility>

namespace optree {

// Deepest nesting that flatten, unflatten and friends accept before raising RecursionError.
// Every walk over a treespec is iterative, so treespecs of any depth can be built (compose,
// transform, from_collection, unpickling) and handled; paths(), accessors() and
// broadcast_to_common_suffix() raise RecursionError past this many levels, as optree does.
inline constexpr Py_ssize_t kMaxRecursionDepth = 1000;

// An owned (strong) reference. Moving transfers ownership; destruction releases it.
class Ref {
 public:
  Ref() noexcept = default;
  static Ref steal(PyObject* obj) noexcept { return Ref(obj); }
  static Ref borrow(PyObject* obj) noexcept {
    Py_XINCREF(obj);
    return Ref(obj);
  }
  Ref(const Ref& other) noexcept : obj_(other.obj_) { Py_XINCREF(obj_); }
  Ref(Ref&& other) noexcept : obj_(std::exchange(other.obj_, nullptr)) {}
  Ref& operator=(Ref other) noexcept {
    std::swap(obj_, other.obj_);
    return *this;
  }
  ~Ref() { Py_XDECREF(obj_); }

  PyObject* get() const noexcept { return obj_; }
  PyObject* release() noexcept { return std::exchange(obj_, nullptr); }
  explicit operator bool() const noexcept { return obj_ != nullptr; }

 private:
  explicit Ref(PyObject* obj) noexcept : obj_(obj) {}
  PyObject* obj_ = nullptr;
};

// Thrown by the core after a Python exception has been set; the bindings turn it into that
// exception. Core code never swallows it.
struct PythonError {};

[[noreturn]] inline void throw_python_error() { throw PythonError{}; }

[[noreturn]] inline void raise(PyObject* type, const std::string& message) {
  PyErr_SetString(type, message.c_str());
  throw PythonError{};
}

// Returns obj, or throws if obj is null (a Python exception is then set).
inline PyObject* check(PyObject* obj) {
  if (obj == nullptr) throw_python_error();
  return obj;
}
inline Ref check_ref(PyObject* obj) { return Ref::steal(check(obj)); }
inline int check_int(int rc) {
  if (rc < 0) throw_python_error();
  return rc;
}

// Takes the Python exception being raised out of the thread state (so that cleanup code may call
// into Python) and raises it again when destroyed. exception() is the exception object (null if
// none was set).
class SetAsideError {
 public:
  SetAsideError() noexcept {
#if PY_VERSION_HEX >= 0x030C0000
    exception_ = PyErr_GetRaisedException();
#else
    PyErr_Fetch(&type_, &exception_, &traceback_);
    PyErr_NormalizeException(&type_, &exception_, &traceback_);
#endif
  }
  SetAsideError(const SetAsideError&) = delete;
  SetAsideError& operator=(const SetAsideError&) = delete;
  ~SetAsideError() {
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exception_);
#else
    PyErr_Restore(type_, exception_, traceback_);
#endif
  }
  PyObject* exception() const noexcept { return exception_; }

 private:
  PyObject* exception_ = nullptr;
#if PY_VERSION_HEX < 0x030C0000
  PyObject* type_ = nullptr;
  PyObject* traceback_ = nullptr;
#endif
};

// Called by the bindings inside a catch block: turns the active C++ exception into a Python one.
inline void translate_exception() {
  try {
    throw;
  } catch (const PythonError&) {
    if (!PyErr_Occurred()) {
      PyErr_SetString(PyExc_SystemError, "optree: error raised without an exception set");
    }
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
  } catch (const std::exception& error) {
    PyErr_SetString(PyExc_RuntimeError, error.what());
  } catch (...) {
    PyErr_SetString(PyExc_SystemError, "optree: unknown C++ exception");
  }
}

// A new str object holding `text`; throws on error.
inline Ref unicode(const std::string& text) {
  return check_ref(PyUnicode_FromStringAndSize(text.data(), static_cast<Py_ssize_t>(text.size())));
}

// A new tuple of the first `n` of `items` (PyObject* or Ref), each with a new reference.
inline PyObject* object_of(PyObject* item) noexcept { return item; }
inline PyObject* object_of(const Ref& item) noexcept { return item.get(); }
template <class Item>
Ref tuple_of(const Item* items, Py_ssize_t n) {
  Ref tuple = check_ref(PyTuple_New(n));
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyTuple_SET_ITEM(tuple.get(), i, Py_NewRef(object_of(items[i])));
  }
  return tuple;
}

}  // namespace optree
