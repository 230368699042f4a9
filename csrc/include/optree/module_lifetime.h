// The lifetime of the optree._C module object in each interpreter: what Cython's module state
// table does not release, and the hook that tears an interpreter's registry down at its exit.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

namespace optree {

// Cython's per-interpreter module lookup table (static functions of the generated module, so
// the bindings pass them in).
struct CythonModuleTable {
  PyObject* (*find)(void* unused);
  int (*add)(PyObject* module, void* unused);
};

// Called first in the module's exec, with a type of the module. Cython 3.1-3.3 with module
// state and multi-phase init keeps each interpreter's module in its lookup table with a strong
// reference that nothing releases, and leaves m_free unset: the module of every destroyed
// subinterpreter would leak with its state and types (and with them the obmalloc state of an
// isolated interpreter). This wraps the module def's m_clear (at most once per module: a second
// run of Cython's can touch the table after Cython freed it) and sets m_free, so that a module
// that dies without the GC clearing it is still cleared. Returns -1 with an exception set.
int take_module_lifetime(PyObject* module_type, CythonModuleTable table);

// Hands back the lookup table's reference to the module, at interpreter exit, so that
// finalization frees the module like any other. Does nothing unless take_module_lifetime ran.
// Returns -1 with an exception set.
int release_module_reference(PyObject* module_type);

// Whether this CPython lets an extension run a C function at interpreter exit (3.13+).
#if PY_VERSION_HEX >= 0x030D0000
inline constexpr bool kHasExitHook = true;
#else
inline constexpr bool kHasExitHook = false;
#endif

// Registers the C exit hook (3.13+): at this interpreter's exit it destroys the interpreter's
// registry shard and releases the lookup table's module reference. `module_type` is borrowed:
// the lookup table keeps the module, which keeps its types, alive until the hook runs.
// Returns -1 with an exception set; a no-op returning 0 where kHasExitHook is false.
int register_exit_hook(PyObject* module_type);

}  // namespace optree
