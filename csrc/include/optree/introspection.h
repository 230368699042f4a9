// namedtuple and PyStructSequence classes: which classes are one (optree's tests, by the
// class's attributes) and their field names. csrc/introspection.cpp.
#pragma once

#include "optree/common.h"
#include "optree/registry.h"

namespace optree {

// What a strict tuple subclass is; cached per interpreter (see TupleClassCache).
TupleClassInfo tuple_class_info(PyTypeObject* type, const BuiltinTypes& builtins);
bool is_namedtuple_class(PyObject* cls, const BuiltinTypes& builtins);
bool is_namedtuple_class(PyObject* cls);  // looks this interpreter's builtins up
bool is_structseq_class(PyObject* cls, const BuiltinTypes& builtins);
bool is_structseq_class(PyObject* cls);  // looks this interpreter's builtins up
// The number of fields a PyStructSequence class's instances flatten to (n_sequence_fields).
Py_ssize_t structseq_length(PyTypeObject* type);
// `obj` if it is a class, else its class.
PyObject* type_of(PyObject* obj);
// The field names of a namedtuple / PyStructSequence instance or class (TypeError otherwise).
Ref namedtuple_fields(PyObject* obj);
Ref structseq_fields(PyObject* obj);

}  // namespace optree
