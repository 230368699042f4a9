// Cyclic garbage collection of the binding types. PyTreeSpec and PyTreeIter are Cython classes
// whose Python objects live in C++ members (a TreeSpec, a LeafIterator), which Cython's generated
// tp_traverse / tp_clear cannot see. The installers below chain the C++ side into those slots.
#pragma once

#include "optree/common.h"

namespace optree {

class TreeSpec;

// Reports every Python object `spec` owns, each as often as it holds a reference to it. A custom
// node's registration is shared (with the registry, other treespecs, running calls), so its
// members are reported once, and only when this treespec's nodes hold every reference to it.
int traverse_treespec(const TreeSpec& spec, visitproc visit, void* arg) noexcept;
// Empties `spec` (it then behaves as an uninitialized one) and releases what it held.
void clear_treespec(TreeSpec& spec) noexcept;

// Make the GC type `type` (one whose tp_traverse and tp_clear Cython generated) also traverse and
// clear the TreeSpec, or the LeafIterator* (which may be null), at `offset` in its instances.
// Called at module exec in every interpreter, for that interpreter's type objects.
void install_treespec_gc(PyTypeObject* type, Py_ssize_t offset);
void install_iterator_gc(PyTypeObject* type, Py_ssize_t offset);

}  // namespace optree
