# optree.parallel's transfer format (csrc/transfer.cpp), included at the end of _C.pyx.
# Private helpers: optree/parallel.py is their only user.

from optree.core cimport (
    transfer_decode_leaves,
    transfer_decode_structure,
    transfer_encode_leaves,
    transfer_encode_structure,
    transfer_match_leaves,
    transfer_registrations_current,
    transfer_same_structure,
)


def _transfer_encode_structure(PyTreeSpec treespec not None, locate, dumps, /):
    """The structure encoding (bytes) of a treespec."""
    return steal(transfer_encode_structure(treespec.spec, <PyObject*>locate, <PyObject*>dumps))


def _transfer_decode_structure(encoding, resolve, loads, missing_error, /):
    """The treespec of a structure encoding, bound to this interpreter's registry."""
    cdef TreeSpec spec = transfer_decode_structure(<PyObject*>encoding, <PyObject*>resolve,
                                                   <PyObject*>loads, <PyObject*>missing_error)
    return wrap(spec)


def _transfer_same_structure(PyTreeSpec a not None, PyTreeSpec b not None, /):
    """Whether two treespecs have the same structure encoding."""
    return transfer_same_structure(a.spec, b.spec)


def _transfer_registrations_current(PyTreeSpec treespec not None, /):
    """Whether the treespec's custom nodes still have this interpreter's registrations."""
    return transfer_registrations_current(treespec.spec)


def _transfer_encode_leaves(leaves, dumps, /):
    """(bytes, tuple of objects) encoding a list or tuple of leaves."""
    return steal(transfer_encode_leaves(<PyObject*>leaves, <PyObject*>dumps))


def _transfer_decode_leaves(data, objects, loads, /):
    """The list of leaves of a leaf encoding."""
    return steal(transfer_decode_leaves(<PyObject*>data, <PyObject*>objects, <PyObject*>loads))


def _transfer_match_leaves(PyTreeSpec treespec not None, tree, none_is_leaf, namespace,
                           insertion_ordered, dumps, /):
    """The leaf encoding of `tree` if it flattens to `treespec`, else None (see transfer.h)."""
    cdef Ref encoded = transfer_match_leaves(treespec.spec, <PyObject*>tree, bool(none_is_leaf),
                                             namespace_of(namespace), bool(insertion_ordered),
                                             <PyObject*>dumps)
    if encoded.get() == NULL:
        return None
    return steal(encoded)
