// The type registry: one shard per interpreter, found through a process-wide libcds map keyed
// by interpreter ID. A shard publishes immutable snapshots through an atomic pointer; readers
// pin one with a libcds hazard pointer for the length of a call and never take a lock.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <cds/gc/dhp.h>

#include "optree/common.h"

namespace optree {

enum class NodeKind : uint8_t {
  Custom = 0,
  Leaf,
  None,
  Tuple,
  List,
  Dict,
  NamedTuple,
  OrderedDict,
  DefaultDict,
  Deque,
  StructSequence,
  FrozenDict,
  NumKinds,
};

// A user-registered node type. Immutable once built; shared by snapshots and treespecs.
struct Registration {
  Registration(PyObject* type, PyObject* flatten, PyObject* unflatten, PyObject* path_entry_type,
               std::string ns, int64_t interpreter_id, PyObject* field_layout = nullptr);
  ~Registration();
  Registration(const Registration&) = delete;
  Registration& operator=(const Registration&) = delete;

  PyObject* type;
  PyObject* flatten_func;
  PyObject* unflatten_func;
  PyObject* path_entry_type;
  // For a class whose instances flatten_func reads and unflatten_func rebuilds by field name
  // (optree.dataclasses, the attrs integration), what those functions do, so that the core
  // does it without calling them; null for any other registration. See FieldLayout.
  PyObject* field_layout;
  std::string ns;
  // The interpreter whose objects these are. The last holder may be a treespec freed late in
  // that interpreter's finalization (release there), or a retired snapshot freed by a thread of
  // another interpreter after the owner is gone (then the references are abandoned).
  int64_t interpreter_id;
};
using RegistrationPtr = std::shared_ptr<const Registration>;

// A registration's field layout: a tuple of str tuples. flatten_func(obj) returns
//   (tuple(getattr(obj, n) for n in child_names),
//    tuple((k, getattr(obj, n)) for n, k in zip(metadata_names, metadata_keywords)),
//    child_names)
// and unflatten_func(metadata, children) returns
//   type(**dict(zip(child_keywords, children)), **dict(metadata)).
// The caller gives the first four parts; register_node() appends the call's keyword names.
struct FieldLayout {
  enum Part : Py_ssize_t {
    ChildNames = 0,
    ChildKeywords,
    MetadataNames,
    MetadataKeywords,
    NumGivenParts,
    Keywords = NumGivenParts,  // child keywords, then metadata keywords
    NumParts,
  };
  static PyObject* part(const Registration& registration, Part which) noexcept {
    return PyTuple_GET_ITEM(registration.field_layout, which);
  }
};

// Open-addressing table from a type pointer to its registration; built once, read-only.
class TypeTable {
 public:
  void build(const std::vector<const RegistrationPtr*>& entries);
  const RegistrationPtr* find(PyTypeObject* type) const noexcept {
    if (slots_.empty()) return nullptr;
    auto hash = reinterpret_cast<uintptr_t>(type);
    size_t index = (hash >> 4) & mask_;
    while (true) {
      const Slot& slot = slots_[index];
      if (slot.type == type) return slot.registration;
      if (slot.type == nullptr) return nullptr;
      index = (index + 1) & mask_;
    }
  }

 private:
  struct Slot {
    PyTypeObject* type = nullptr;
    const RegistrationPtr* registration = nullptr;
  };
  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

struct ReclaimInbox;

// One immutable state of an interpreter's registry.
struct Snapshot {
  // namespace ("" = global) -> type -> registration
  std::unordered_map<std::string, std::unordered_map<PyTypeObject*, RegistrationPtr>> by_namespace;
  TypeTable global_table;
  // Per namespace: the global entries overlaid with that namespace's own.
  std::unordered_map<std::string, TypeTable> namespace_tables;
  bool global_dict_insertion_ordered = false;
  std::set<std::string> dict_insertion_ordered_namespaces;
  std::shared_ptr<ReclaimInbox> inbox;

  void rebuild_tables();
  // Whether dicts flatten in insertion order in namespace `ns` ("" = global): by the
  // namespace's own mode or, with `inherit_global`, by the global one, which holds in every
  // namespace.
  bool dicts_insertion_ordered(const std::string& ns, bool inherit_global = true) const {
    if (ns.empty()) return global_dict_insertion_ordered;
    return (inherit_global && global_dict_insertion_ordered) ||
           dict_insertion_ordered_namespaces.contains(ns);
  }
  const TypeTable& table_for(const std::string& ns) const {
    if (!ns.empty()) {
      auto it = namespace_tables.find(ns);
      if (it != namespace_tables.end()) return it->second;
    }
    return global_table;
  }
};

// What a tuple subclass is to the core (see tuple_class_info() in introspection.h).
struct TupleClassInfo {
  bool namedtuple = false;
  bool structseq = false;
  // A namedtuple whose instances can be built the way its own __new__ builds them, without
  // calling it: see namedtuple_builds_like_tuple() in introspection.cpp.
  bool builds_like_tuple = false;
  uint16_t num_fields = 0;
};

// Tuple subclass classifications keyed by type version tag. CPython gives a type a new tag
// whenever it or a base changes, and never hands a tag to two types of an interpreter, so a hit
// is always current. Lock-free: each slot is one self-validating word.
class TupleClassCache {
 public:
  bool find(unsigned int tag, TupleClassInfo& info) const noexcept {
    uint64_t word = slots_[tag & (kSlots - 1)].load(std::memory_order_relaxed);
    if (tag == 0 || (word >> 32) != tag) return false;
    info.namedtuple = (word & 1) != 0;
    info.structseq = (word & 2) != 0;
    info.builds_like_tuple = (word & 4) != 0;
    info.num_fields = static_cast<uint16_t>(word >> 16);
    return true;
  }
  void store(unsigned int tag, const TupleClassInfo& info) const noexcept {
    if (tag == 0) return;
    uint64_t word = (uint64_t{tag} << 32) | (uint64_t{info.num_fields} << 16) |
                    (info.namedtuple ? 1 : 0) | (info.structseq ? 2 : 0) |
                    (info.builds_like_tuple ? 4 : 0);
    slots_[tag & (kSlots - 1)].store(word, std::memory_order_relaxed);
  }

 private:
  static constexpr size_t kSlots = 256;
  mutable std::array<std::atomic<uint64_t>, kSlots> slots_{};
};

// Per-interpreter objects the core uses on hot paths: the builtin container types that are not
// static types, interned attribute names (which hit CPython's type attribute cache), and the
// tuple subclass cache.
struct BuiltinTypes {
  PyTypeObject* ordered_dict = nullptr;
  PyTypeObject* default_dict = nullptr;
  PyTypeObject* deque = nullptr;
  PyObject* name_fields = nullptr;  // '_fields'
  PyObject* name_make = nullptr;    // '_make'
  PyObject* name_asdict = nullptr;  // '_asdict'
  PyObject* name_new = nullptr;     // '__new__'
  PyObject* name_init = nullptr;    // '__init__'
  PyObject* empty_tuple = nullptr;  // ()
  PyObject* tuple_new = nullptr;    // tuple.__new__ (a per-interpreter object from 3.12 on)
  TupleClassCache tuple_classes;

  // Whether `type` is one of the container types whose nodes the core builds in: tuple, list,
  // dict, OrderedDict, defaultdict, deque (None's type is not among them).
  bool is_builtin_container(const PyTypeObject* type) const noexcept {
    return type == &PyTuple_Type || type == &PyList_Type || type == &PyDict_Type ||
           type == ordered_dict || type == default_dict || type == deque;
  }
};

class Shard {
 public:
  explicit Shard(int64_t interpreter_id);
  ~Shard();  // must run in the owning interpreter, with its thread state attached

  int64_t interpreter_id() const noexcept { return interpreter_id_; }
  const BuiltinTypes& builtins() const noexcept { return builtins_; }

  // `field_layout`: null, or a FieldLayout tuple that flatten and unflatten agree with.
  void register_node(PyObject* type, PyObject* flatten, PyObject* unflatten,
                     PyObject* path_entry_type, const std::string& ns,
                     PyObject* field_layout = nullptr);
  void unregister_node(PyObject* type, const std::string& ns);
  void set_dict_insertion_ordered(bool mode, const std::string& ns);
  // Frees the retired snapshots that no thread reads any more. Each collection starts with it
  // (a gc callback): a registration that only retired snapshots still hold would otherwise
  // count as held outside its treespecs (gc.cpp), and a cycle through its unregistered type
  // would wait for the next registry change, which frees them too.
  void reclaim_retired();

  std::atomic<Snapshot*> current;

 private:
  // Applies `edit` to a copy of the current snapshot and publishes it, unless the edit returns
  // false (then nothing changes). Returns what the edit returned.
  template <typename Edit>
  bool publish(Edit&& edit);
  void drain_inbox();

  int64_t interpreter_id_;
  BuiltinTypes builtins_;
  std::mutex write_mutex_;
  std::shared_ptr<ReclaimInbox> inbox_;
};

// Pins this interpreter's current snapshot for as long as it lives. Callers re-pin with
// refresh() after running Python code, which may have changed the registry: like optree, every
// node is classified against the registry as it is when the node is reached.
class RegistryView {
 public:
  RegistryView();
  const Snapshot& snapshot() const noexcept { return *snapshot_; }
  const Shard& shard() const noexcept { return *shard_; }
  void refresh() {
    snapshot_ = guard_.protect(shard_->current);
    leaf_type_ = nullptr;
  }
  // The last type found to make leaves (never a tuple subclass, whose verdict depends on more
  // than the registry): the next object of that type is a leaf while the snapshot stays.
  bool is_known_leaf_type(PyTypeObject* type) const noexcept { return type == leaf_type_; }
  void remember_leaf_type(PyTypeObject* type) noexcept { leaf_type_ = type; }
  // The lookup table of a namespace, cached while the snapshot stays the same.
  [[gnu::always_inline]] const TypeTable& table_for(const std::string& ns) {
    if (table_snapshot_ != snapshot_) [[unlikely]] {
      table_ = &snapshot_->table_for(ns);
      table_snapshot_ = snapshot_;
    }
    return *table_;
  }

 private:
  Shard* shard_;
  cds::gc::DHP::Guard guard_;
  const Snapshot* snapshot_;
  const Snapshot* table_snapshot_ = nullptr;
  const TypeTable* table_ = nullptr;
  PyTypeObject* leaf_type_ = nullptr;
};

// Interpreter lifecycle, called by the bindings.
void create_current_shard();   // at module exec
void destroy_current_shard();  // at the interpreter's finalization
Shard& current_shard();        // raises RuntimeError if this interpreter has no shard

// This interpreter's builtins, looked up on first use: at most one shard lookup per call.
class LazyBuiltins {
 public:
  const BuiltinTypes& get() {
    if (builtins_ == nullptr) builtins_ = &current_shard().builtins();
    return *builtins_;
  }

 private:
  const BuiltinTypes* builtins_ = nullptr;
};

// The registration functions of optree._C (registration.cpp): the public policy (a class, not a
// builtin container; callable functions; the warning when a namedtuple or PyStructSequence class
// gets a registration of its own) around this interpreter's Shard::register_node and
// unregister_node.
void register_node(PyObject* type, PyObject* flatten, PyObject* unflatten,
                   PyObject* path_entry_type, const std::string& ns, PyObject* field_layout);
void unregister_node(PyObject* type, const std::string& ns);

// Introspection.
Py_ssize_t registry_size(const std::string* ns);  // ns == nullptr: every namespace
bool is_dict_insertion_ordered(const std::string& ns, bool inherit_global);
int64_t num_interpreters_seen();
int64_t num_interpreters_alive();
std::vector<int64_t> alive_interpreter_ids();
int64_t current_interpreter_id();
int64_t main_interpreter_id();

// Builtin node kinds that registry_size() counts in every namespace, as optree 0.20 reports
// them (it counts seven: its None, namedtuple and structseq entries fold into fewer slots).
inline constexpr Py_ssize_t kNumBuiltinRegistrations = 7;

}  // namespace optree
