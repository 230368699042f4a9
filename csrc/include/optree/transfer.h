// optree.parallel's transfer format: a treespec and a sequence of leaves as bytes that every
// interpreter of the process shares natively (CPython 3.14's concurrent.interpreters copies
// bytes, str, int, float, None, bool and tuples of them without pickling).
//
// A structure encoding is a self-contained description of a treespec: node kinds and arities in
// post-order, dict keys, deque maxlens and custom metadata as tagged values, and every type
// (namedtuple, PyStructSequence, custom node, default_factory) by module and qualified name.
// The receiving interpreter resolves those names and finds custom node types in its own
// registry, so registries stay per interpreter. A leaf encoding is the leaves one after the
// other: None, bools, ints of 64 bits, floats, str and small bytes inline, large bytes and
// memoryviews as objects beside the bytes, anything else pickled leaf by leaf.
//
// Python calls back into: `locate(type) -> (module, qualname, flag)` (how a receiver finds a
// type; flag 1: the type of that object), `resolve(module, qualname, flag, role) -> object`,
// `dumps(obj) -> bytes` and `loads(bytes-like) -> obj` (pickle). Decoding validates everything:
// the bytes may come from anywhere.
#pragma once

#include "optree/treespec.h"

namespace optree::transfer {

// The structure encoding of `spec` (a bytes object).
Ref encode_structure(const TreeSpec& spec, PyObject* locate, PyObject* dumps);

// The treespec an encoding describes, with custom nodes bound to this interpreter's
// registrations; raises `missing_error` (an exception type) naming a custom node type that is
// not registered here, and ValueError for a malformed encoding.
TreeSpec decode_structure(PyObject* encoding, PyObject* resolve, PyObject* loads,
                          PyObject* missing_error);

// Whether two treespecs have the same structure encoding: like ==, but also telling apart what
// == does not (dict insertion order, the namespace, 1 / 1.0 / True as keys or metadata, -0.0 /
// 0.0). Objects of other types are compared with ==. Used to cache encodings by treespec.
bool same_structure(const TreeSpec& a, const TreeSpec& b);

// Whether the custom nodes of `spec` are still bound to the registrations of their types in
// this interpreter (the registry may have changed since `spec` was decoded).
bool registrations_current(const TreeSpec& spec);

// The leaf encoding of a list or tuple of objects: a 2-tuple (bytes, tuple of objects).
Ref encode_leaves(PyObject* leaves, PyObject* dumps);

// The leaf encoding of `tree`'s leaves if flattening it (without a leaf predicate, with these
// options) gives `spec`, made under the dict order mode `insertion_ordered`; a null Ref (no
// exception) if the tree differs or has custom nodes (whose flatten function is Python code) or
// PyStructSequences. Trees of a shape sent before skip the treespec that flatten would build.
Ref match_leaves(const TreeSpec& spec, PyObject* tree, bool none_is_leaf, const std::string& ns,
                 bool insertion_ordered, PyObject* dumps);

// The list of leaves of a leaf encoding.
Ref decode_leaves(PyObject* data, PyObject* objects, PyObject* loads);

}  // namespace optree::transfer
