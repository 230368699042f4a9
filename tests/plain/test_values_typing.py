"""optree.typing's runtime helpers and the module constants, with hand-written expected values.
No reference interpreter needed (the values were read off optree 0.20.0)."""

from __future__ import annotations

import time
from collections import namedtuple

import pytest

import optree

P = namedtuple('P', ['x', 'y'])


def test_namedtuple_helpers():
    assert optree.is_namedtuple(P)
    assert optree.is_namedtuple(P(1, 2))
    assert not optree.is_namedtuple((1, 2))
    assert optree.is_namedtuple_class(P)
    assert not optree.is_namedtuple_instance(P)
    assert optree.namedtuple_fields(P) == ('x', 'y')
    with pytest.raises(TypeError, match=r'Expected an instance of collections\.namedtuple type'):
        optree.namedtuple_fields(1)


def test_structseq_helpers():
    assert optree.is_structseq(time.gmtime(0))
    assert optree.is_structseq_class(time.struct_time)
    assert optree.is_structseq_instance(time.gmtime(0))
    assert optree.structseq_fields(time.struct_time)[:3] == ('tm_year', 'tm_mon', 'tm_mday')


def test_constants():
    assert optree.MAX_RECURSION_DEPTH == 1000
    assert (optree.NONE_IS_LEAF, optree.NONE_IS_NODE) == (True, False)
    assert list(optree.PyTreeKind)[:3] == [
        optree.PyTreeKind.CUSTOM,
        optree.PyTreeKind.LEAF,
        optree.PyTreeKind.NONE,
    ]
    assert int(optree.PyTreeKind.NUM_KINDS) == 12
