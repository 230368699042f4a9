// tree_map and its variants in one pass of the core: the arguments of every call, the calls,
// and the rebuild.
#pragma once

#include "optree/treespec.h"

namespace optree {

// The classes accessors are made of (see TreeSpec::accessors()).
struct AccessorTypes {
  PyObject* entry_types = nullptr;
  PyObject* accessor_type = nullptr;
  PyObject* kinds = nullptr;
};

struct MapRequest {
  PyObject* func = nullptr;
  // The leaves of the first tree, a list of spec.num_leaves() items; null when every tree is in
  // `trees` (tree_broadcast_map).
  PyObject* leaves = nullptr;
  // The trees matched against the treespec as flatten_up_to() matches them.
  PyObject* const* trees = nullptr;
  Py_ssize_t num_trees = 0;
  // What each call gets before the leaf, if anything: these paths (a list), the paths of the
  // treespec (with_paths and no list), or the accessors of the treespec.
  PyObject* paths = nullptr;
  bool with_paths = false;
  const AccessorTypes* accessors = nullptr;
  // Rebuild a tree of the treespec from the results; otherwise discard them.
  bool rebuild = true;
};

// What optree 0.20.0 computes as
//   flat = [treespec.flatten_up_to(t) for t in trees]
//   treespec.unflatten(map(func, [prefix,] leaves, *flat))   (rebuild)
//   deque(map(func, [prefix,] leaves, *flat), maxlen=0)      (otherwise)
// with the same observable steps in the same order: every tree is matched (its checks, error
// messages and custom flatten functions) before the first call of func; the prefix (paths,
// accessors) is made after the matching; func is called with vectorcall, one leaf at a time,
// in leaf order; with rebuild, the calls interleave with building the containers as unflatten
// reads a map object (one ahead), and a StopIteration from func ends the leaves early (unflatten
// then raises "Too few leaves"); without, a StopIteration from func ends the calls silently,
// as it ends deque's consumption of the map. The arguments are held until the end.
// Returns the rebuilt tree, or None.
Ref map_leaves(const TreeSpec& spec, const MapRequest& request);

}  // namespace optree
