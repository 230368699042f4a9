#include "optree/module_lifetime.h"

#include <mutex>
#include <unordered_set>

#include "optree/registry.h"

namespace optree {

namespace {

// Set once, by the first interpreter's take_module_lifetime: every interpreter's module comes
// from the same module def.
inquiry cython_module_clear = nullptr;
CythonModuleTable cython_table{};
bool holds_table_references = false;

std::mutex cleared_modules_mutex;
std::unordered_set<PyObject*> cleared_modules;

// Cython's m_clear also takes "this interpreter's module" out of the lookup table. A module
// whose exec failed (e.g. `import optree` while atexit.register raises) may be collected after
// a new import made another module the interpreter's one: that one is put back.
int clear_only(PyObject* module) {
  PyObject* current = cython_table.find(nullptr);
  if (current == nullptr || current == module) return cython_module_clear(module);
  Py_INCREF(current);
  int result = cython_module_clear(module);
  if (cython_table.find(nullptr) == nullptr) {
    if (cython_table.add(current, nullptr) == 0) return result;  // the table took it
    PyErr_Clear();
  }
  Py_DECREF(current);
  return result;
}

int module_clear(PyObject* module) {
  {
    std::lock_guard<std::mutex> lock(cleared_modules_mutex);
    if (!cleared_modules.insert(module).second) return 0;
  }
  return clear_only(module);
}

void module_free(void* module) {
  bool cleared;
  {
    std::lock_guard<std::mutex> lock(cleared_modules_mutex);
    cleared = cleared_modules.erase(static_cast<PyObject*>(module)) > 0;
  }
  if (!cleared) (void)clear_only(static_cast<PyObject*>(module));
}

[[maybe_unused]] void release_shard_at_exit(void* module_type) {
  try {
    destroy_current_shard();
  } catch (...) {
    PyErr_Clear();
  }
  if (release_module_reference(static_cast<PyObject*>(module_type)) < 0) PyErr_Clear();
}

}  // namespace

int take_module_lifetime(PyObject* module_type, CythonModuleTable table) {
  PyObject* module = PyType_GetModule(reinterpret_cast<PyTypeObject*>(module_type));
  if (module == nullptr) return -1;
  PyModuleDef* def = PyModule_GetDef(module);
  if (def == nullptr) {
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_SystemError, "optree._C has no module def");
    return -1;
  }
  static std::once_flag hooks_installed;
  std::call_once(hooks_installed, [def, table] {
    cython_table = table;
    cython_module_clear = def->m_clear;
    def->m_clear = module_clear;
    def->m_free = module_free;
    holds_table_references = true;
  });
  return 0;
}

int release_module_reference(PyObject* module_type) {
  if (!holds_table_references) return 0;
  PyObject* module = PyType_GetModule(reinterpret_cast<PyTypeObject*>(module_type));
  if (module == nullptr) return -1;
  Py_DECREF(module);  // the lookup table's reference; sys.modules still holds one
  return 0;
}

int register_exit_hook(PyObject* module_type) {
#if PY_VERSION_HEX >= 0x030D0000
  return PyUnstable_AtExit(PyInterpreterState_Get(), release_shard_at_exit, module_type);
#else
  (void)module_type;
  return 0;
#endif
}

}  // namespace optree
