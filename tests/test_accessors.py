"""Path entries (``optree.accessors``: GetAttrEntry, dotted names included, item, sequence,
mapping, namedtuple, structseq, dataclass and flattened entries, AutoEntry) and PyTreeAccessor,
compared with optree 0.20.0 (messages included)."""

from __future__ import annotations

ENTRY_SETUP = """
import dataclasses
from optree import (
    AutoEntry, DataclassEntry, FlattenedEntry, GetAttrEntry, GetItemEntry, MappingEntry,
    NamedTupleEntry, PyTreeAccessor, PyTreeEntry, SequenceEntry, StructSequenceEntry,
)
K = PyTreeKind


class Inner:
    def __init__(self):
        self.value = 42
        setattr(self, 'not an identifier', 'odd')


class Outer:
    def __init__(self):
        self.inner = Inner()


@dataclasses.dataclass
class DC:
    a: int
    b: int = dataclasses.field(default=0, init=False)
    c: int = 3


ST = time.gmtime(0)
"""

ENTRY_EXPRS = [
    # GetAttrEntry, dotted names included.
    "GetAttrEntry('inner.value', Outer, K.CUSTOM)",
    "GetAttrEntry('inner.value', Outer, K.CUSTOM)(Outer())",
    "GetAttrEntry('inner.value', Outer, K.CUSTOM).name",
    "GetAttrEntry('inner.value', Outer, K.CUSTOM).codify('obj')",
    "GetAttrEntry('inner.not an identifier', Outer, K.CUSTOM).codify('obj')",
    "GetAttrEntry('inner.not an identifier', Outer, K.CUSTOM)(Outer())",
    "GetAttrEntry('inner.missing', Outer, K.CUSTOM)(Outer())",
    "GetAttrEntry('inner', Outer, K.CUSTOM).codify()",
    "GetAttrEntry('a', Outer, K.CUSTOM) == GetAttrEntry('a', Outer, K.CUSTOM)",
    "GetAttrEntry('a', Outer, K.CUSTOM) == GetItemEntry('a', Outer, K.CUSTOM)",
    "hash(GetAttrEntry('a', Outer, K.CUSTOM)) == hash(GetAttrEntry('a', Outer, K.CUSTOM))",
    # Item entries.
    "GetItemEntry('k', dict, K.DICT)({'k': 1})",
    "GetItemEntry('k', dict, K.DICT).codify('d')",
    "GetItemEntry('k', dict, K.DICT)(1)",
    'SequenceEntry(1, list, K.LIST)([5, 6])',
    '(SequenceEntry(1, list, K.LIST).index, SequenceEntry(1, list, K.LIST))',
    "MappingEntry('k', dict, K.DICT)",
    "MappingEntry('k', dict, K.DICT).key",
    "MappingEntry('k', dict, K.DICT).codify('m')",
    'NamedTupleEntry(1, Point, K.NAMEDTUPLE)',
    '(NamedTupleEntry(1, Point, K.NAMEDTUPLE).fields, '
    'NamedTupleEntry(1, Point, K.NAMEDTUPLE).field, NamedTupleEntry(1, Point, K.NAMEDTUPLE).name)',
    'NamedTupleEntry(1, Point, K.NAMEDTUPLE)(Point(3, 4))',
    "NamedTupleEntry(1, Point, K.NAMEDTUPLE).codify('p')",
    'StructSequenceEntry(0, type(ST), K.STRUCTSEQUENCE)',
    'StructSequenceEntry(0, type(ST), K.STRUCTSEQUENCE).fields',
    'StructSequenceEntry(0, type(ST), K.STRUCTSEQUENCE).field',
    'StructSequenceEntry(0, type(ST), K.STRUCTSEQUENCE)(ST)',
    "StructSequenceEntry(0, type(ST), K.STRUCTSEQUENCE).codify('s')",
    "DataclassEntry('c', DC, K.CUSTOM)",
    'DataclassEntry(1, DC, K.CUSTOM)',
    '(DataclassEntry(1, DC, K.CUSTOM).fields, DataclassEntry(1, DC, K.CUSTOM).init_fields, '
    'DataclassEntry(1, DC, K.CUSTOM).field, DataclassEntry(1, DC, K.CUSTOM).name)',
    "DataclassEntry('c', DC, K.CUSTOM)(DC(1))",
    "DataclassEntry('c', DC, K.CUSTOM).codify('x')",
    'FlattenedEntry(0, Outer, K.CUSTOM)',
    "FlattenedEntry(0, Outer, K.CUSTOM).codify('x')",
    'FlattenedEntry(0, Outer, K.CUSTOM)(Outer())',
    # AutoEntry picks a class by the node type.
    '[AutoEntry(0, t, K.CUSTOM) for t in (Point, type(ST), DC, dict, list, Outer)]',
    '[type(AutoEntry(0, t, K.CUSTOM)).__name__ for t in (Point, type(ST), DC, dict, list, Outer)]',
    'AutoEntry(0, list, K.LIST)',
    # Entries that cannot exist.
    'PyTreeEntry(0, int, K.LEAF)',
    'PyTreeEntry(0, type(None), K.NONE)',
    'PyTreeEntry(0, list, K.LIST)',
    'PyTreeEntry(0, list, K.LIST)([7])',
    "PyTreeEntry(0, list, K.LIST).codify('v')",
    'PyTreeEntry(0, list, K.LIST) + PyTreeEntry(1, list, K.LIST)',
    'PyTreeEntry(0, list, K.LIST) + 1',
    'PyTreeEntry(0, list, K.LIST).entry, PyTreeEntry(0, list, K.LIST).type',
    'e = PyTreeEntry(0, list, K.LIST)\ne.entry = 1',
    # Accessors.
    'PyTreeAccessor()',
    "PyTreeAccessor()({'a': 1})",
    "PyTreeAccessor((MappingEntry('a', dict, K.DICT), SequenceEntry(1, list, K.LIST)))",
    "PyTreeAccessor((MappingEntry('a', dict, K.DICT), SequenceEntry(1, list, K.LIST)))"
    "({'a': [0, 9]})",
    "PyTreeAccessor((MappingEntry('a', dict, K.DICT), SequenceEntry(1, list, K.LIST))).path",
    "PyTreeAccessor((MappingEntry('a', dict, K.DICT), "
    "GetAttrEntry('inner.value', Outer, K.CUSTOM))).codify('root')",
    "PyTreeAccessor([MappingEntry('a', dict, K.DICT)])",
    'PyTreeAccessor((1, 2))',
    "PyTreeAccessor(MappingEntry('a', dict, K.DICT))",
    "PyTreeAccessor((MappingEntry('a', dict, K.DICT),)) + MappingEntry('b', dict, K.DICT)",
    "PyTreeAccessor((MappingEntry('a', dict, K.DICT),)) + PyTreeAccessor()",
    "PyTreeAccessor((MappingEntry('a', dict, K.DICT),)) + 1",
    "PyTreeAccessor((MappingEntry('a', dict, K.DICT),)) * 2",
    "PyTreeAccessor((MappingEntry('a', dict, K.DICT),))[0]",
    "PyTreeAccessor((MappingEntry('a', dict, K.DICT),))[5]",
    "PyTreeAccessor((MappingEntry('a', dict, K.DICT),)) == (MappingEntry('a', dict, K.DICT),)",
    'isinstance(PyTreeAccessor(), tuple)',
    "_pickle_all(PyTreeAccessor((MappingEntry('a', dict, K.DICT), "
    "GetAttrEntry('inner.value', Outer, K.CUSTOM))))",
    '_pickle_all(NamedTupleEntry(1, Point, K.NAMEDTUPLE))',
    "copy.deepcopy(optree.tree_accessors({'x': [Outer()]}))",
]


def test_path_entries_and_accessors(differential):
    differential.check(ENTRY_SETUP, ENTRY_EXPRS, check_message=True)
