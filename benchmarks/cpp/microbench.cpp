// Google Benchmark programs for the core's hot paths, driven from C++ with an embedded CPython:
// flatten, unflatten, flatten_up_to, the shard lookup, the per-node type dispatch, and treespec
// hashing, comparison and pickle state. No Cython bindings are involved, so these figures are
// the core's own cost; the Python side-by-side harness (benchmarks/side_by_side.py) measures
// what users see.
//
// Built only with `meson setup -Dmicrobenchmarks=true` (make bench-cpp). Run it with the usual
// Google Benchmark flags, e.g. --benchmark_filter=Flatten --benchmark_format=json.

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

#include "optree/common.h"
#include "optree/registry.h"
#include "optree/text.h"
#include "optree/treespec.h"

namespace {

using optree::FlattenOptions;
using optree::Ref;
using optree::TreeSpec;

// The inputs, built once in Python after the core's shard exists. The custom node class is
// registered with the core directly, the way the bindings do it.
constexpr const char* kTreesSource = R"PY(
import collections

class Pair:
    __slots__ = ('left', 'right')
    def __init__(self, left, right):
        self.left, self.right = left, right

def pair_flatten(pair):
    return (pair.left, pair.right), None

def pair_unflatten(metadata, children):
    return Pair(*children)

Param = collections.namedtuple('Param', ['weight', 'bias'])

def model(layers, width):
    return collections.OrderedDict(
        (f'layer{i}', Param(list(range(width)), [i])) for i in range(layers)
    )

def chain(depth):
    tree = 0
    for _ in range(depth):
        tree = [tree]
    return tree

class Opaque:
    pass

trees = {
    'list1000': list(range(1000)),
    'dict100x10': {f'k{i:03d}': tuple(range(10)) for i in range(100)},
    'chain200': chain(200),
    'model_s': model(4, 4),
    'model_m': model(32, 16),
    'model_l': model(256, 16),
    'custom': [Pair(i, (i, Pair(i, None))) for i in range(100)],
}

# Per-node dispatch: 1,000 children of one kind under a tuple.
dispatch = {
    'int': tuple(range(1000)),
    'none': (None,) * 1000,
    'tuple': ((),) * 1000,
    'list': tuple([] for _ in range(1000)),
    'dict': tuple({} for _ in range(1000)),
    'ordered_dict': tuple(collections.OrderedDict() for _ in range(1000)),
    'namedtuple': (collections.namedtuple('Empty', [])(),) * 1000,
    'custom': tuple(Pair(None, None) for _ in range(1000)),
    'unregistered': tuple(Opaque() for _ in range(1000)),
}
)PY";

PyObject* g_namespace = nullptr;  // the globals of kTreesSource, alive for the whole run

const char* kTreeNames[] = {"list1000", "dict100x10", "chain200", "model_s",
                            "model_m",  "model_l",    "custom"};
const char* kDispatchKinds[] = {"int",          "none",       "tuple",  "list",        "dict",
                                "ordered_dict", "namedtuple", "custom", "unregistered"};

PyObject* lookup(const char* table, const char* name) {
  PyObject* dict = PyDict_GetItemString(g_namespace, table);
  PyObject* obj = dict == nullptr ? nullptr : PyDict_GetItemString(dict, name);
  if (obj == nullptr) {
    std::fprintf(stderr, "microbench: no %s[%s]\n", table, name);
    std::abort();
  }
  return obj;
}

// Runs `body` once per iteration; a Python error stops the benchmark with its message.
template <typename Body>
void run(benchmark::State& state, Body&& body) {
  try {
    for (auto _ : state) body();
  } catch (const optree::PythonError&) {
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    std::string message = value ? optree::str_of(value) : "unknown Python error";
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(traceback);
    state.SkipWithError(message.c_str());
  }
}

// Time per leaf (or per node) as a counter next to the time per call.
void per_item(benchmark::State& state, Py_ssize_t items, const char* name) {
  state.counters[name] =
      benchmark::Counter(static_cast<double>(items), benchmark::Counter::kIsIterationInvariantRate |
                                                         benchmark::Counter::kInvert);
  state.SetItemsProcessed(state.iterations() * items);
}

TreeSpec flatten(PyObject* tree, Ref* leaves) {
  FlattenOptions options;
  return TreeSpec::flatten(tree, options, leaves);
}

// ----------------------------------------------------------------------------- structure

void BM_Flatten(benchmark::State& state, const char* name) {
  PyObject* tree = lookup("trees", name);
  Py_ssize_t num_leaves = 0;
  run(state, [&] {
    Ref leaves;
    TreeSpec spec = flatten(tree, &leaves);
    num_leaves = spec.num_leaves();
    benchmark::DoNotOptimize(leaves.get());
  });
  per_item(state, num_leaves, "per_leaf");
}

void BM_Unflatten(benchmark::State& state, const char* name) {
  Ref leaves;
  TreeSpec spec = flatten(lookup("trees", name), &leaves);
  run(state, [&] {
    Ref tree = spec.unflatten(leaves.get());
    benchmark::DoNotOptimize(tree.get());
  });
  per_item(state, spec.num_leaves(), "per_leaf");
}

void BM_FlattenUpTo(benchmark::State& state, const char* name) {
  PyObject* tree = lookup("trees", name);
  Ref leaves;
  TreeSpec spec = flatten(tree, &leaves);
  run(state, [&] {
    Ref subtrees = spec.flatten_up_to(tree);
    benchmark::DoNotOptimize(subtrees.get());
  });
  per_item(state, spec.num_leaves(), "per_leaf");
}

// ------------------------------------------------------------------------------ treespec

void BM_TreeSpecHash(benchmark::State& state, const char* name) {
  Ref leaves;
  TreeSpec spec = flatten(lookup("trees", name), &leaves);
  run(state, [&] { benchmark::DoNotOptimize(spec.hash()); });
  per_item(state, spec.num_nodes(), "per_node");
}

void BM_TreeSpecEquals(benchmark::State& state, const char* name) {
  // Two separately built, equal treespecs: no identity shortcut.
  PyObject* tree = lookup("trees", name);
  Ref leaves;
  TreeSpec left = flatten(tree, &leaves);
  TreeSpec right = flatten(tree, &leaves);
  run(state, [&] {
    bool equal = left.equals(right);
    if (!equal) optree::raise(PyExc_AssertionError, "equal treespecs compare unequal");
    benchmark::DoNotOptimize(equal);
  });
  per_item(state, left.num_nodes(), "per_node");
}

void BM_PickleRoundTrip(benchmark::State& state, const char* name) {
  // The core's half of pickling: state out, validated treespec back (no pickle module).
  Ref leaves;
  TreeSpec spec = flatten(lookup("trees", name), &leaves);
  run(state, [&] {
    Ref pickled = spec.pickle_state();
    TreeSpec restored = TreeSpec::from_pickle_state(pickled.get());
    benchmark::DoNotOptimize(restored.nodes().data());
  });
  per_item(state, spec.num_nodes(), "per_node");
}

void BM_PickleLoadUnshared(benchmark::State& state, const char* name) {
  // Loading a state as optree 0.20.0 writes it: every node state its own tuple (ours share one
  // between equal nodes, which loading then parses once).
  Ref leaves;
  TreeSpec spec = flatten(lookup("trees", name), &leaves);
  Ref pickled = spec.pickle_state();
  PyObject* shared_nodes = PyTuple_GET_ITEM(pickled.get(), 0);
  Ref nodes = optree::check_ref(PyTuple_New(PyTuple_GET_SIZE(shared_nodes)));
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(shared_nodes); ++i) {
    PyTuple_SET_ITEM(nodes.get(), i,
                     optree::check(PyTuple_GetSlice(PyTuple_GET_ITEM(shared_nodes, i), 0, 8)));
  }
  Ref unshared = optree::check_ref(PyTuple_Pack(3, nodes.get(), PyTuple_GET_ITEM(pickled.get(), 1),
                                                PyTuple_GET_ITEM(pickled.get(), 2)));
  run(state, [&] {
    TreeSpec restored = TreeSpec::from_pickle_state(unshared.get());
    benchmark::DoNotOptimize(restored.nodes().data());
  });
  per_item(state, spec.num_nodes(), "per_node");
}

// ------------------------------------------------------------------------------ registry

// One public call's registry cost: find this interpreter's shard in the process-wide map.
void BM_ShardLookup(benchmark::State& state) {
  run(state, [&] { benchmark::DoNotOptimize(&optree::current_shard()); });
}

// Shard lookup plus pinning the current snapshot with a hazard pointer (once per call).
void BM_RegistryViewPin(benchmark::State& state) {
  run(state, [&] {
    optree::RegistryView view;
    benchmark::DoNotOptimize(&view.snapshot());
  });
}

// The per-node probe of the registered-type table, hit and miss.
void BM_TypeTableProbe(benchmark::State& state, bool hit) {
  PyObject* probe = hit ? lookup("dispatch", "custom") : lookup("dispatch", "unregistered");
  auto* type = Py_TYPE(PyTuple_GET_ITEM(probe, 0));
  run(state, [&] {
    optree::RegistryView view;
    const optree::TypeTable& table = view.table_for("");
    for (int i = 0; i < 1000; ++i) {
      benchmark::DoNotOptimize(type);
      benchmark::DoNotOptimize(table.find(type));
    }
  });
  per_item(state, 1000, "per_probe");
}

// Per-node type dispatch as flatten sees it: a tuple of 1,000 children of one kind, so the
// time per child is classification plus recording one node (and its leaf, for leaves).
void BM_Dispatch(benchmark::State& state, const char* kind) {
  PyObject* tree = lookup("dispatch", kind);
  run(state, [&] {
    Ref leaves;
    TreeSpec spec = flatten(tree, &leaves);
    benchmark::DoNotOptimize(spec.nodes().data());
  });
  per_item(state, PyTuple_GET_SIZE(tree), "per_node");
}

void register_benchmarks() {
  for (const char* name : kTreeNames) {
    benchmark::RegisterBenchmark((std::string("Flatten/") + name).c_str(), BM_Flatten, name);
    benchmark::RegisterBenchmark((std::string("Unflatten/") + name).c_str(), BM_Unflatten, name);
    benchmark::RegisterBenchmark((std::string("FlattenUpTo/") + name).c_str(), BM_FlattenUpTo,
                                 name);
    benchmark::RegisterBenchmark((std::string("TreeSpecHash/") + name).c_str(), BM_TreeSpecHash,
                                 name);
    benchmark::RegisterBenchmark((std::string("TreeSpecEquals/") + name).c_str(), BM_TreeSpecEquals,
                                 name);
    benchmark::RegisterBenchmark((std::string("PickleState/") + name).c_str(), BM_PickleRoundTrip,
                                 name);
    benchmark::RegisterBenchmark((std::string("PickleLoadUnshared/") + name).c_str(),
                                 BM_PickleLoadUnshared, name);
  }
  benchmark::RegisterBenchmark("ShardLookup", BM_ShardLookup);
  benchmark::RegisterBenchmark("RegistryViewPin", BM_RegistryViewPin);
  benchmark::RegisterBenchmark("TypeTableProbe/hit", BM_TypeTableProbe, true);
  benchmark::RegisterBenchmark("TypeTableProbe/miss", BM_TypeTableProbe, false);
  for (const char* kind : kDispatchKinds) {
    benchmark::RegisterBenchmark((std::string("Dispatch/") + kind).c_str(), BM_Dispatch, kind);
  }
}

// Starts CPython, creates this interpreter's shard and builds the inputs.
void start_python() {
  PyConfig config;
  PyConfig_InitIsolatedConfig(&config);
  config.install_signal_handlers = 0;
  // Named after the interpreter the build was configured with, so that CPython finds its
  // prefix (and the standard library) exactly as that interpreter does.
  const char* python = std::getenv("OPTREE_MICROBENCH_PYTHON");
  PyStatus status = PyConfig_SetBytesString(&config, &config.program_name,
                                            python != nullptr ? python : OPTREE_BUILD_PYTHON);
  if (!PyStatus_Exception(status)) status = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  if (PyStatus_Exception(status)) Py_ExitStatusException(status);

  try {
    optree::create_current_shard();
    g_namespace = PyDict_New();
    PyDict_SetItemString(g_namespace, "__builtins__", PyEval_GetBuiltins());
    Ref result = Ref::steal(PyRun_String(kTreesSource, Py_file_input, g_namespace, g_namespace));
    if (!result) optree::throw_python_error();
    PyObject* pair = PyDict_GetItemString(g_namespace, "Pair");
    optree::current_shard().register_node(pair, PyDict_GetItemString(g_namespace, "pair_flatten"),
                                          PyDict_GetItemString(g_namespace, "pair_unflatten"),
                                          Py_None, "");
  } catch (const optree::PythonError&) {
    PyErr_Print();
    std::exit(1);
  }
}

void stop_python() {
  Py_CLEAR(g_namespace);
  optree::destroy_current_shard();
  Py_FinalizeEx();
}

}  // namespace

int main(int argc, char** argv) {
  start_python();
  register_benchmarks();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("python", Py_GetVersion());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  stop_python();
  return 0;
}
