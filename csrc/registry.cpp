#include "optree/registry.h"

#include <algorithm>
#include <bit>

#include <cds/container/feldman_hashmap_dhp.h>
#include <cds/init.h>

#include "optree/text.h"

namespace optree {

// ---------------------------------------------------------------------------------------------
// libcds set-up: the garbage collector is created once per process and never destroyed, and
// every thread attaches itself before it touches a libcds structure.

namespace {

void initialize_libcds() {
  static std::once_flag once;
  std::call_once(once, [] {
    cds::Initialize();
    // Leaked on purpose: threads of any interpreter may still retire pointers at exit.
    new cds::gc::DHP();
  });
}

struct ThreadAttachment {
  ThreadAttachment() {
    initialize_libcds();
    if (!cds::threading::Manager::isThreadAttached()) {
      cds::threading::Manager::attachThread();
      attached = true;
    }
  }
  ~ThreadAttachment() {
    if (attached) cds::threading::Manager::detachThread();
  }
  bool attached = false;
};

inline void ensure_thread_attached() { thread_local ThreadAttachment attachment; }

using ShardMap = cds::container::FeldmanHashMap<cds::gc::DHP, int64_t, Shard*>;

ShardMap& shard_map() {
  // Leaked on purpose, like the collector it depends on.
  static ShardMap* map = [] {
    initialize_libcds();
    return new ShardMap();
  }();
  return *map;
}

std::atomic<int64_t> interpreters_seen{0};

PyTypeObject* import_type(const char* module, const char* name) {
  Ref mod = check_ref(PyImport_ImportModule(module));
  Ref type = check_ref(PyObject_GetAttrString(mod.get(), name));
  if (!PyType_Check(type.get())) raise(PyExc_TypeError, std::string(module) + "." + name);
  return reinterpret_cast<PyTypeObject*>(type.release());
}

}  // namespace

// Retired snapshots end up here once no reader pins them. The disposer may run on any thread
// of any interpreter, so it never touches a Python object: the owning interpreter frees the
// snapshots at its next registry write, or at its finalization.
struct ReclaimInbox {
  std::mutex mutex;
  std::vector<Snapshot*> unpinned;
  bool owner_alive = true;
  // Snapshots retired and not deleted yet: in a thread's retired list, or in `unpinned`.
  std::atomic<size_t> pending{0};
};

namespace {

struct SnapshotDisposer {
  void operator()(Snapshot* snapshot) const {
    std::shared_ptr<ReclaimInbox> inbox = snapshot->inbox;
    std::lock_guard lock(inbox->mutex);
    if (inbox->owner_alive) {
      inbox->unpinned.push_back(snapshot);
    } else {
      delete snapshot;  // its registrations no longer own references (see ~Shard)
    }
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------------

Registration::Registration(PyObject* type_, PyObject* flatten, PyObject* unflatten,
                           PyObject* path_entry_type_, std::string ns_, int64_t interpreter_id_,
                           PyObject* field_layout_)
    : type(Py_NewRef(type_)),
      flatten_func(Py_NewRef(flatten)),
      unflatten_func(Py_NewRef(unflatten)),
      path_entry_type(Py_NewRef(path_entry_type_)),
      field_layout(Py_XNewRef(field_layout_)),
      ns(std::move(ns_)),
      interpreter_id(interpreter_id_) {}

namespace {

// Whether this thread runs Python code of interpreter `id` now. IDs are never reused, so this
// is false for good once that interpreter is gone.
bool attached_to_interpreter(int64_t id) {
#if PY_VERSION_HEX >= 0x030D0000
  PyThreadState* thread_state = PyThreadState_GetUnchecked();
#else
  PyThreadState* thread_state = _PyThreadState_UncheckedGet();
#endif
  return thread_state != nullptr &&
         PyInterpreterState_GetID(PyThreadState_GetInterpreter(thread_state)) == id;
}

}  // namespace

Registration::~Registration() {
  if (attached_to_interpreter(interpreter_id)) {
    Py_DECREF(type);
    Py_DECREF(flatten_func);
    Py_DECREF(unflatten_func);
    Py_DECREF(path_entry_type);
    Py_XDECREF(field_layout);
  }
}

void TypeTable::build(const std::vector<const RegistrationPtr*>& entries) {
  slots_.clear();
  mask_ = 0;
  if (entries.empty()) return;
  size_t capacity = std::bit_ceil(entries.size() * 2 + 2);
  slots_.assign(capacity, Slot{});
  mask_ = capacity - 1;
  for (const RegistrationPtr* registration : entries) {
    auto* type = reinterpret_cast<PyTypeObject*>((*registration)->type);
    size_t index = (reinterpret_cast<uintptr_t>(type) >> 4) & mask_;
    while (slots_[index].type != nullptr && slots_[index].type != type) {
      index = (index + 1) & mask_;
    }
    slots_[index] = Slot{type, registration};
  }
}

void Snapshot::rebuild_tables() {
  std::vector<const RegistrationPtr*> global_entries;
  if (auto it = by_namespace.find(""); it != by_namespace.end()) {
    for (const auto& [type, registration] : it->second) global_entries.push_back(&registration);
  }
  global_table.build(global_entries);
  namespace_tables.clear();
  for (const auto& [ns, entries] : by_namespace) {
    if (ns.empty() || entries.empty()) continue;
    std::vector<const RegistrationPtr*> merged;
    for (const RegistrationPtr* registration : global_entries) {
      if (!entries.contains(reinterpret_cast<PyTypeObject*>((*registration)->type))) {
        merged.push_back(registration);
      }
    }
    for (const auto& [type, registration] : entries) merged.push_back(&registration);
    namespace_tables[ns].build(merged);
  }
}

// ---------------------------------------------------------------------------------------------

Shard::Shard(int64_t interpreter_id) : interpreter_id_(interpreter_id) {
  builtins_.ordered_dict = import_type("collections", "OrderedDict");
  builtins_.default_dict = import_type("collections", "defaultdict");
  builtins_.deque = import_type("collections", "deque");
  builtins_.name_fields = check(PyUnicode_InternFromString("_fields"));
  builtins_.name_make = check(PyUnicode_InternFromString("_make"));
  builtins_.name_asdict = check(PyUnicode_InternFromString("_asdict"));
  builtins_.name_new = check(PyUnicode_InternFromString("__new__"));
  builtins_.name_init = check(PyUnicode_InternFromString("__init__"));
  builtins_.empty_tuple = check(PyTuple_New(0));
  builtins_.tuple_new =
      check(PyObject_GetAttr(reinterpret_cast<PyObject*>(&PyTuple_Type), builtins_.name_new));
  inbox_ = std::make_shared<ReclaimInbox>();
  auto* first = new Snapshot();
  first->inbox = inbox_;
  current.store(first, std::memory_order_release);
}

Shard::~Shard() {
  // Runs in the owning interpreter while its objects can still be released.
  std::vector<Snapshot*> to_free;
  {
    std::lock_guard lock(inbox_->mutex);
    inbox_->owner_alive = false;
    to_free.swap(inbox_->unpinned);
  }
  to_free.push_back(current.exchange(nullptr));
  for (Snapshot* snapshot : to_free) delete snapshot;
  // Snapshots still waiting in other threads' retired lists are freed by their disposer later,
  // possibly on a thread of another interpreter: ~Registration abandons what it holds there.
  // Registrations that treespecs still hold are released when those die, later in this
  // interpreter's finalization.
  Py_DECREF(builtins_.ordered_dict);
  Py_DECREF(builtins_.default_dict);
  Py_DECREF(builtins_.deque);
  Py_DECREF(builtins_.name_fields);
  Py_DECREF(builtins_.name_make);
  Py_DECREF(builtins_.name_asdict);
  Py_DECREF(builtins_.name_new);
  Py_DECREF(builtins_.name_init);
  Py_DECREF(builtins_.empty_tuple);
  Py_DECREF(builtins_.tuple_new);
}

void Shard::drain_inbox() {
  std::vector<Snapshot*> to_free;
  {
    std::lock_guard lock(inbox_->mutex);
    to_free.swap(inbox_->unpinned);
  }
  for (Snapshot* snapshot : to_free) delete snapshot;
  inbox_->pending.fetch_sub(to_free.size(), std::memory_order_relaxed);
}

void Shard::reclaim_retired() {
  if (inbox_->pending.load(std::memory_order_relaxed) == 0) return;
  ensure_thread_attached();
  // Also takes over the retired lists of threads that have exited (libcds' help_scan).
  cds::gc::DHP::scan();
  drain_inbox();
}

template <typename Edit>
bool Shard::publish(Edit&& edit) {
  ensure_thread_attached();
  // Writers are rare; a blocking wait must not hold this thread's Python state, or a
  // free-threaded stop-the-world would deadlock against us.
  std::unique_lock lock(write_mutex_, std::try_to_lock);
  if (!lock.owns_lock()) {
    Py_BEGIN_ALLOW_THREADS
      lock.lock();
    Py_END_ALLOW_THREADS
  }
  Snapshot* old_snapshot = current.load(std::memory_order_acquire);
  auto next = std::make_unique<Snapshot>(*old_snapshot);
  // No Python code runs under the lock: an edit only reports whether it applies.
  if (!edit(*next)) return false;
  next->rebuild_tables();
  current.store(next.release(), std::memory_order_release);
  inbox_->pending.fetch_add(1, std::memory_order_relaxed);
  cds::gc::DHP::retire<SnapshotDisposer>(old_snapshot);
  lock.unlock();
  cds::gc::DHP::scan();
  drain_inbox();
  return true;
}

namespace {

// The layout to store: the given parts, checked, and the keyword names of the rebuild call.
Ref complete_field_layout(PyObject* layout) {
  auto is_str_tuple = [](PyObject* part) {
    if (!PyTuple_CheckExact(part)) return false;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(part); ++i) {
      if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(part, i))) return false;
    }
    return true;
  };
  auto size_of = [layout](FieldLayout::Part part) {
    return PyTuple_GET_SIZE(PyTuple_GET_ITEM(layout, part));
  };
  bool valid = PyTuple_CheckExact(layout) && PyTuple_GET_SIZE(layout) == FieldLayout::NumGivenParts;
  for (Py_ssize_t i = 0; valid && i < FieldLayout::NumGivenParts; ++i) {
    valid = is_str_tuple(PyTuple_GET_ITEM(layout, i));
  }
  valid = valid && size_of(FieldLayout::ChildNames) == size_of(FieldLayout::ChildKeywords) &&
          size_of(FieldLayout::MetadataNames) == size_of(FieldLayout::MetadataKeywords);
  if (!valid) {
    raise(PyExc_TypeError,
          "A field layout is a tuple of four tuples of str: child names, child keywords, "
          "metadata names and metadata keywords, names and keywords of equal lengths; got " +
              repr_of(layout) + ".");
  }
  Ref keywords =
      check_ref(PySequence_Concat(PyTuple_GET_ITEM(layout, FieldLayout::ChildKeywords),
                                  PyTuple_GET_ITEM(layout, FieldLayout::MetadataKeywords)));
  Ref distinct = check_ref(PySet_New(keywords.get()));
  if (PySet_GET_SIZE(distinct.get()) != PyTuple_GET_SIZE(keywords.get())) {
    raise(PyExc_TypeError,
          "The keywords of a field layout must be distinct; got " + repr_of(keywords.get()) + ".");
  }
  Ref completed = check_ref(PyTuple_New(FieldLayout::NumParts));
  for (Py_ssize_t i = 0; i < FieldLayout::NumGivenParts; ++i) {
    PyTuple_SET_ITEM(completed.get(), i, Py_NewRef(PyTuple_GET_ITEM(layout, i)));
  }
  PyTuple_SET_ITEM(completed.get(), FieldLayout::Keywords, keywords.release());
  return completed;
}

[[noreturn]] void raise_registration_error(PyObject* type, const std::string& ns,
                                           const char* state) {
  std::string where = namespace_phrase(ns);
  raise(PyExc_ValueError, "PyTree type " + repr_of(type) + " is " + state + " in " + where + ".");
}

}  // namespace

void Shard::register_node(PyObject* type, PyObject* flatten, PyObject* unflatten,
                          PyObject* path_entry_type, const std::string& ns,
                          PyObject* field_layout) {
  Ref layout = field_layout != nullptr ? complete_field_layout(field_layout) : Ref();
  auto registration = std::make_shared<const Registration>(
      type, flatten, unflatten, path_entry_type, ns, interpreter_id_, layout.get());
  bool added = publish([&](Snapshot& snapshot) {
    return snapshot.by_namespace[ns]
        .emplace(reinterpret_cast<PyTypeObject*>(type), registration)
        .second;
  });
  if (!added) raise_registration_error(type, ns, "already registered");
}

void Shard::unregister_node(PyObject* type, const std::string& ns) {
  bool removed = publish([&](Snapshot& snapshot) {
    auto it = snapshot.by_namespace.find(ns);
    if (it == snapshot.by_namespace.end() ||
        it->second.erase(reinterpret_cast<PyTypeObject*>(type)) == 0) {
      return false;
    }
    if (it->second.empty()) snapshot.by_namespace.erase(it);
    return true;
  });
  if (!removed) raise_registration_error(type, ns, "not registered");
}

void Shard::set_dict_insertion_ordered(bool mode, const std::string& ns) {
  publish([&](Snapshot& snapshot) {
    if (ns.empty()) {
      snapshot.global_dict_insertion_ordered = mode;
    } else if (mode) {
      snapshot.dict_insertion_ordered_namespaces.insert(ns);
    } else {
      snapshot.dict_insertion_ordered_namespaces.erase(ns);
    }
    return true;
  });
}

// ---------------------------------------------------------------------------------------------

RegistryView::RegistryView() : shard_(&current_shard()) {
  snapshot_ = guard_.protect(shard_->current);
}

int64_t current_interpreter_id() { return PyInterpreterState_GetID(PyInterpreterState_Get()); }

int64_t main_interpreter_id() { return PyInterpreterState_GetID(PyInterpreterState_Main()); }

void create_current_shard() {
  ensure_thread_attached();
  int64_t id = current_interpreter_id();
  if (shard_map().contains(id)) return;  // the module was executed again in this interpreter
  auto shard = std::make_unique<Shard>(id);
  if (shard_map().insert(id, shard.get())) {
    shard.release();
    interpreters_seen.fetch_add(1, std::memory_order_relaxed);
  }
}

void destroy_current_shard() {
  ensure_thread_attached();
  int64_t id = current_interpreter_id();
  Shard* shard = nullptr;
  if (shard_map().erase(id, [&](ShardMap::value_type& item) { shard = item.second; })) {
    delete shard;
  }
}

Shard& current_shard() {
  ensure_thread_attached();
  int64_t id = current_interpreter_id();
  // Only threads of this interpreter look its shard up, and the shard is destroyed by this
  // interpreter's finalization, so the raw pointer stays valid for the whole call.
  Shard* shard = nullptr;
  shard_map().find(id, [&](ShardMap::value_type& item) { shard = item.second; });
  if (shard == nullptr) {
    raise(PyExc_RuntimeError,
          "optree's registry is not available in this interpreter: optree._C was not imported "
          "here, or the interpreter is finalizing.");
  }
  return *shard;
}

Py_ssize_t registry_size(const std::string* ns) {
  RegistryView view;
  const Snapshot& snapshot = view.snapshot();
  Py_ssize_t count = kNumBuiltinRegistrations;
  auto size_of = [&](const std::string& name) -> Py_ssize_t {
    auto it = snapshot.by_namespace.find(name);
    return it == snapshot.by_namespace.end() ? 0 : static_cast<Py_ssize_t>(it->second.size());
  };
  if (ns == nullptr) {
    for (const auto& [name, entries] : snapshot.by_namespace) count += entries.size();
  } else {
    count += size_of("");
    if (!ns->empty()) count += size_of(*ns);
  }
  return count;
}

bool is_dict_insertion_ordered(const std::string& ns, bool inherit_global) {
  RegistryView view;
  return view.snapshot().dicts_insertion_ordered(ns, inherit_global);
}

int64_t num_interpreters_seen() { return interpreters_seen.load(std::memory_order_relaxed); }

int64_t num_interpreters_alive() {
  ensure_thread_attached();
  return static_cast<int64_t>(shard_map().size());
}

std::vector<int64_t> alive_interpreter_ids() {
  ensure_thread_attached();
  std::vector<int64_t> ids;
  for (auto it = shard_map().begin(); it != shard_map().end(); ++it) ids.push_back(it->first);
  std::sort(ids.begin(), ids.end());
  return ids;
}

}  // namespace optree
