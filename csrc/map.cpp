// tree_map and its variants in one pass: see map.h.
#include "optree/map.h"

#include <memory>

#include "internal.h"

namespace optree {

namespace {

// The arguments of every call, one row of `columns` per leaf, as new references (null until
// set). One slot before the first row lets the callee use PY_VECTORCALL_ARGUMENTS_OFFSET (it may
// change the slot before its arguments for the length of the call, and restores it).
class ArgumentTable {
 public:
  ArgumentTable(Py_ssize_t rows, Py_ssize_t columns) : rows_(rows), columns_(columns) {
    if (columns > 0 &&
        rows > (PY_SSIZE_T_MAX / static_cast<Py_ssize_t>(sizeof(PyObject*)) - 1) / columns) {
      throw std::bad_alloc();
    }
    size_t size = static_cast<size_t>(rows * columns) + 1;
    if (size > kOnStack) {
      on_heap_.reset(new PyObject*[size]());
      slots_ = on_heap_.get();
    } else {
      for (size_t i = 0; i < size; ++i) on_stack_[i] = nullptr;
    }
  }
  ~ArgumentTable() {
    PyObject** end = slots_ + 1 + rows_ * columns_;
    for (PyObject** slot = slots_ + 1; slot != end; ++slot) Py_XDECREF(*slot);
  }
  ArgumentTable(const ArgumentTable&) = delete;
  ArgumentTable& operator=(const ArgumentTable&) = delete;

  Py_ssize_t rows() const noexcept { return rows_; }
  Py_ssize_t columns() const noexcept { return columns_; }
  PyObject** row(Py_ssize_t index) noexcept { return slots_ + 1 + index * columns_; }

  // Column `index` takes the items of `list`, which must hold one per row.
  void fill_column(Py_ssize_t index, PyObject* list) {
    if (!PyList_CheckExact(list) || PyList_GET_SIZE(list) != rows_) {
      raise(PyExc_SystemError, "optree: a map column of the wrong size");
    }
    PyObject** slot = slots_ + 1 + index;
    for (Py_ssize_t i = 0; i < rows_; ++i, slot += columns_) {
      *slot = Py_NewRef(PyList_GET_ITEM(list, i));
    }
  }
  // Column `index` takes the subtrees of `tree` at the leaves of `spec` (flatten_up_to).
  void match_column(Py_ssize_t index, const TreeSpec& spec, PyObject* tree) {
    spec.flatten_up_to(tree, slots_ + 1 + index, columns_);
  }

 private:
  static constexpr size_t kOnStack = 33;
  Py_ssize_t rows_;
  Py_ssize_t columns_;
  PyObject* on_stack_[kOnStack];
  std::unique_ptr<PyObject*[]> on_heap_;
  PyObject** slots_ = on_stack_;
};

// The calls of func, one row at a time: a TreeSpec::LeafProducer.
struct Calls {
  PyObject* func;
  ArgumentTable& table;
  Py_ssize_t next = 0;

  PyObject* call_next() {
    if (next >= table.rows()) return nullptr;  // what map's next gives once the lists end
    PyObject** args = table.row(next++);
    return PyObject_Vectorcall(
        func, args, static_cast<size_t>(table.columns()) | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr);
  }
  static PyObject* produce(void* self) { return static_cast<Calls*>(self)->call_next(); }
};

}  // namespace

Ref map_leaves(const TreeSpec& spec, const MapRequest& request) {
  spec.root();  // raises if uninitialized
  bool with_prefix = request.with_paths || request.accessors != nullptr;
  Py_ssize_t first_tree = (with_prefix ? 1 : 0) + (request.leaves != nullptr ? 1 : 0);
  ArgumentTable table(spec.num_leaves(), first_tree + request.num_trees);
  if (request.leaves != nullptr) table.fill_column(with_prefix ? 1 : 0, request.leaves);
  for (Py_ssize_t i = 0; i < request.num_trees; ++i) {
    table.match_column(first_tree + i, spec, request.trees[i]);
  }
  if (request.accessors != nullptr) {
    const AccessorTypes& types = *request.accessors;
    Ref accessors = spec.accessors(types.entry_types, types.accessor_type, types.kinds);
    table.fill_column(0, accessors.get());
  } else if (request.with_paths) {
    Ref paths = request.paths != nullptr ? Ref::borrow(request.paths) : spec.paths();
    table.fill_column(0, paths.get());
  }
  Calls calls{request.func, table};
  if (request.rebuild) return spec.unflatten(Calls::produce, &calls);
  while (true) {
    Ref result = Ref::steal(calls.call_next());
    if (result) continue;
    if (!PyErr_Occurred()) break;
    if (!PyErr_ExceptionMatches(PyExc_StopIteration)) throw_python_error();
    PyErr_Clear();
    break;
  }
  return Ref::borrow(Py_None);
}

}  // namespace optree
