// Python objects as text, for error messages and reprs (csrc/text.cpp).
#pragma once

#include <string>

#include "optree/common.h"

namespace optree {

// repr(obj) as UTF-8; throws on error.
std::string repr_of(PyObject* obj);
// repr() of a namespace name as Python shows it (quoted, escaped), as error messages need it.
inline std::string namespace_repr(const std::string& ns) { return repr_of(unicode(ns).get()); }
// "the global namespace" or "namespace '<ns>'", as registry errors name a namespace.
inline std::string namespace_phrase(const std::string& ns) {
  return ns.empty() ? "the global namespace" : "namespace " + namespace_repr(ns);
}
// str(obj) as UTF-8; throws on error.
std::string str_of(PyObject* obj);
// type.__name__ as UTF-8; throws on error.
std::string type_name(PyObject* type);

}  // namespace optree
