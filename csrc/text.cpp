#include "optree/text.h"

namespace optree {

std::string repr_of(PyObject* obj) {
  Ref text = check_ref(PyObject_Repr(obj));
  const char* utf8 = PyUnicode_AsUTF8(text.get());
  if (utf8 == nullptr) throw_python_error();
  return utf8;
}

std::string type_name(PyObject* type) {
  Ref name = check_ref(PyObject_GetAttrString(type, "__name__"));
  return str_of(name.get());
}

std::string str_of(PyObject* obj) {
  Ref text = check_ref(PyObject_Str(obj));
  const char* utf8 = PyUnicode_AsUTF8(text.get());
  if (utf8 == nullptr) throw_python_error();
  return utf8;
}

}  // namespace optree
