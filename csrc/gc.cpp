// Cyclic GC support: what a treespec and a leaf iterator report to the collector, and the slot
// functions that chain it into the Cython types. Nothing here may throw or call Python code
// other than the releases in the clear functions.
#include "optree/gc.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "internal.h"
#include "optree/leaf_iterator.h"
#include "optree/treespec.h"

namespace optree {

namespace {

inline int visit_ref(const Ref& ref, visitproc visit, void* arg) {
  Py_VISIT(ref.get());
  return 0;
}

int visit_registration(const Registration& registration, visitproc visit, void* arg) {
  Py_VISIT(registration.type);
  Py_VISIT(registration.flatten_func);
  Py_VISIT(registration.unflatten_func);
  Py_VISIT(registration.path_entry_type);
  Py_VISIT(registration.field_layout);
  return 0;
}

// Whether the nodes of `nodes` hold every reference to `registration`: the collector may then
// count its members as owned by the treespec. Otherwise something outside the treespec (the
// registry, another treespec, a running call) also keeps the members alive, and reporting them
// would let the collector subtract a reference it does not see from the treespec's side.
bool owns_registration(const std::vector<Node>& nodes, const RegistrationPtr& registration,
                       size_t first_holder) {
  long holders = 0;
  for (size_t i = first_holder; i < nodes.size(); ++i) {
    if (nodes[i].custom == registration) ++holders;
  }
  return registration.use_count() == holders;
}

}  // namespace

int traverse_treespec(const TreeSpec& spec, visitproc visit, void* arg) noexcept {
  const std::vector<Node>& nodes = spec.nodes();
  // The first few distinct registrations, to report each once without a quadratic scan; a
  // treespec rarely has more than a handful of custom node types. Past that, each node looks
  // back for an earlier holder.
  std::array<const Registration*, 8> seen{};
  size_t num_seen = 0;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Node& node = nodes[i];
    if (int rc = visit_ref(node.node_data, visit, arg)) return rc;
    if (int rc = visit_ref(node.node_entries, visit, arg)) return rc;
    if (int rc = visit_ref(node.original_keys, visit, arg)) return rc;
    const Registration* registration = node.custom.get();
    if (registration == nullptr) [[likely]]
      continue;
    bool first = true;
    if (std::find(seen.begin(), seen.begin() + num_seen, registration) != seen.begin() + num_seen) {
      first = false;
    } else if (num_seen < seen.size()) {
      seen[num_seen++] = registration;
    } else {
      for (size_t j = 0; j < i; ++j) {
        if (nodes[j].custom.get() == registration) {
          first = false;
          break;
        }
      }
    }
    if (first && owns_registration(nodes, node.custom, i)) {
      if (int rc = visit_registration(*registration, visit, arg)) return rc;
    }
  }
  return 0;
}

void clear_treespec(TreeSpec& spec) noexcept {
  // Released only once the treespec is empty: the releases may run code that reaches it.
  std::vector<Node> nodes = std::exchange(TreeSpecAccess::nodes(spec), {});
  nodes.clear();
}

int LeafIterator::traverse(visitproc visit, void* arg) const noexcept {
  std::unique_lock lock = try_lock_idle();
  if (!lock.owns_lock()) return 0;
  if (int rc = visit_ref(root_, visit, arg)) return rc;
  if (int rc = visit_ref(predicate_, visit, arg)) return rc;
  for (const Frame& frame : stack_) {
    for (const Ref& child : frame.children) {
      if (int rc = visit_ref(child, visit, arg)) return rc;
    }
  }
  return 0;
}

void LeafIterator::clear() noexcept {
  std::unique_lock lock = try_lock_idle();
  if (!lock.owns_lock()) return;
  // Exhausted from here on; released last (after the lock), as in clear_treespec().
  root_done_ = true;
  options_.leaf_predicate = nullptr;
  Ref root = std::move(root_);
  Ref predicate = std::move(predicate_);
  std::vector<Frame> stack = std::exchange(stack_, {});
  lock.unlock();
}

namespace {

// Cython's own slot functions (they visit the type object and the class's object attributes)
// and where the C++ member lives. Every interpreter's type object has the same ones.
struct ChainedSlots {
  std::atomic<traverseproc> traverse{nullptr};
  std::atomic<inquiry> clear{nullptr};
  std::atomic<Py_ssize_t> offset{0};

  template <typename Member>
  Member& member(PyObject* self) const noexcept {
    return *reinterpret_cast<Member*>(reinterpret_cast<char*>(self) +
                                      offset.load(std::memory_order_relaxed));
  }
  int base_traverse(PyObject* self, visitproc visit, void* arg) const noexcept {
    return traverse.load(std::memory_order_relaxed)(self, visit, arg);
  }
  int base_clear(PyObject* self) const noexcept {
    return clear.load(std::memory_order_relaxed)(self);
  }
};

ChainedSlots treespec_slots;
ChainedSlots iterator_slots;

int treespec_tp_traverse(PyObject* self, visitproc visit, void* arg) {
  if (int rc = treespec_slots.base_traverse(self, visit, arg)) return rc;
  return traverse_treespec(treespec_slots.member<TreeSpec>(self), visit, arg);
}

int treespec_tp_clear(PyObject* self) {
  clear_treespec(treespec_slots.member<TreeSpec>(self));
  return treespec_slots.base_clear(self);
}

int iterator_tp_traverse(PyObject* self, visitproc visit, void* arg) {
  if (int rc = iterator_slots.base_traverse(self, visit, arg)) return rc;
  // Null until the iterator's __cinit__ has made it; the object is tracked from allocation.
  const LeafIterator* iterator = iterator_slots.member<LeafIterator*>(self);
  return iterator == nullptr ? 0 : iterator->traverse(visit, arg);
}

int iterator_tp_clear(PyObject* self) {
  if (LeafIterator* iterator = iterator_slots.member<LeafIterator*>(self)) iterator->clear();
  return iterator_slots.base_clear(self);
}

void install(PyTypeObject* type, Py_ssize_t offset, ChainedSlots& slots, traverseproc traverse,
             inquiry clear) {
  if (!PyType_IS_GC(type) || type->tp_traverse == nullptr || type->tp_clear == nullptr) {
    raise(PyExc_SystemError,
          std::string("optree: ") + type->tp_name + " is not a GC type with traverse and clear");
  }
  if (type->tp_traverse == traverse) return;  // already installed
  // Interpreters with their own GIL may run module exec at the same time.
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  if (slots.traverse.load(std::memory_order_relaxed) == nullptr) {
    slots.traverse.store(type->tp_traverse, std::memory_order_relaxed);
    slots.clear.store(type->tp_clear, std::memory_order_relaxed);
    slots.offset.store(offset, std::memory_order_relaxed);
  } else if (slots.traverse.load(std::memory_order_relaxed) != type->tp_traverse ||
             slots.clear.load(std::memory_order_relaxed) != type->tp_clear ||
             slots.offset.load(std::memory_order_relaxed) != offset) {
    raise(PyExc_SystemError, std::string("optree: unexpected GC slots of ") + type->tp_name);
  }
  type->tp_traverse = traverse;
  type->tp_clear = clear;
}

}  // namespace

void install_treespec_gc(PyTypeObject* type, Py_ssize_t offset) {
  install(type, offset, treespec_slots, treespec_tp_traverse, treespec_tp_clear);
}

void install_iterator_gc(PyTypeObject* type, Py_ssize_t offset) {
  install(type, offset, iterator_slots, iterator_tp_traverse, iterator_tp_clear);
}

}  // namespace optree
