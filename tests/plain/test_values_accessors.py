"""optree.accessors with hand-written expected values: path entries (mapping, sequence,
namedtuple, attribute, automatic) and PyTreeAccessor (call, path, codify, concatenation,
pickling). No reference interpreter needed (the values were read off optree 0.20.0)."""

from __future__ import annotations

import pickle
from collections import namedtuple

import optree
from optree import (
    AutoEntry,
    GetAttrEntry,
    MappingEntry,
    NamedTupleEntry,
    PyTreeAccessor,
    SequenceEntry,
)
from optree import PyTreeKind as K

P = namedtuple('P', ['x', 'y'])
ACCESSOR = PyTreeAccessor((MappingEntry('a', dict, K.DICT), SequenceEntry(1, list, K.LIST)))


def test_mapping_entry():
    entry = MappingEntry('k', dict, K.DICT)
    assert repr(entry) == "MappingEntry(key='k', type=<class 'dict'>)"
    assert entry.key == 'k'
    assert entry.codify('d') == "d['k']"
    assert entry({'k': 5}) == 5
    assert entry == MappingEntry('k', dict, K.DICT)


def test_sequence_entry():
    entry = SequenceEntry(1, list, K.LIST)
    assert repr(entry) == "SequenceEntry(index=1, type=<class 'list'>)"
    assert entry.index == 1
    assert entry([5, 6]) == 6
    assert entry.codify('x') == 'x[1]'


def test_namedtuple_entry():
    entry = NamedTupleEntry(1, P, K.NAMEDTUPLE)
    assert repr(entry) == f"NamedTupleEntry(field='y', type={P!r})"
    assert (entry.field, entry.fields) == ('y', ('x', 'y'))
    assert entry(P(3, 4)) == 4
    assert entry.codify('p') == 'p.y'


def test_dotted_getattr_entry():
    entry = GetAttrEntry('a.b', object, K.CUSTOM)
    assert repr(entry) == "GetAttrEntry(entry='a.b', type=<class 'object'>)"
    assert entry.name == 'a.b'
    assert entry.codify('o') == 'o.a.b'


def test_auto_entry_picks_the_class_by_node_type():
    kinds = [type(AutoEntry(0, t, K.CUSTOM)).__name__ for t in (P, dict, list, object)]
    assert kinds == ['NamedTupleEntry', 'MappingEntry', 'SequenceEntry', 'FlattenedEntry']


def test_accessor_call_path_and_codify():
    assert repr(ACCESSOR) == (
        "PyTreeAccessor(*['a'][1], (MappingEntry(key='a', type=<class 'dict'>), "
        "SequenceEntry(index=1, type=<class 'list'>)))"
    )
    assert ACCESSOR({'a': [0, 9]}) == 9
    assert ACCESSOR.path == ('a', 1)
    assert ACCESSOR.codify('root') == "root['a'][1]"
    assert len(ACCESSOR) == 2
    assert ACCESSOR[0] == MappingEntry('a', dict, K.DICT)


def test_accessor_concatenation_and_pickling():
    longer = ACCESSOR + MappingEntry('b', dict, K.DICT)
    assert type(longer) is PyTreeAccessor
    assert longer.codify('t') == "t['a'][1]['b']"
    assert pickle.loads(pickle.dumps(ACCESSOR)) == ACCESSOR


def test_flatten_with_accessor():
    accessors, leaves, spec = optree.tree_flatten_with_accessor({'a': [1]})
    assert [a.codify('t') for a in accessors] == ["t['a'][0]"]
    assert leaves == [1]
    assert repr(spec) == "PyTreeSpec({'a': [*]})"
    assert optree.treespec_accessors(spec) == accessors
