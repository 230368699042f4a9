"""A hand-written zoo of pytrees, as source text so that both implementations build them alike.

Each entry is ``(id, setup, expr)``: ``setup`` runs after the harness prelude (which defines the
namedtuples ``Point``, ``Triple``, ``Empty`` and the ``typing.NamedTuple`` ``Pair``) and ``expr``
builds the tree.  Custom node types are registered in the namespace :data:`ZOO_NAMESPACE`.
"""

from __future__ import annotations

from typing import NamedTuple

ZOO_NAMESPACE = 'zoo'


class ZooEntry(NamedTuple):
    id: str
    setup: str
    expr: str

    @property
    def has_custom_nodes(self) -> bool:
        return ZOO_NAMESPACE in self.setup


# A registered class with path entries, a custom __eq__ and a readable repr.
MYNODE_WITH_ENTRIES = f"""
class MyNode:
    def __init__(self, a, b):
        self.a = a
        self.b = b

    def __repr__(self):
        return f'MyNode({{self.a!r}}, {{self.b!r}})'

    def __eq__(self, other):
        return type(other) is MyNode and (self.a, self.b) == (other.a, other.b)

    __hash__ = None


optree.register_pytree_node(
    MyNode,
    lambda node: ((node.a, node.b), 'meta', ('a', 'b')),
    lambda meta, children: MyNode(*children),
    namespace={ZOO_NAMESPACE!r},
)
"""

# Flatten function returns a 2-tuple (no entries) and a list of children.
MYBAG_NO_ENTRIES = f"""
class MyBag:
    def __init__(self, *items, tag=None):
        self.items = list(items)
        self.tag = tag

    def __repr__(self):
        return f'MyBag({{self.items!r}}, tag={{self.tag!r}})'

    def __eq__(self, other):
        return type(other) is MyBag and (self.items, self.tag) == (other.items, other.tag)

    __hash__ = None


optree.register_pytree_node(
    MyBag,
    lambda bag: (list(bag.items), bag.tag),
    lambda tag, children: MyBag(*children, tag=tag),
    namespace={ZOO_NAMESPACE!r},
)
"""

# register_pytree_node_class with a decorator and classmethod unflatten; metadata is a dict.
MYCLASS_DECORATED = f"""
@optree.register_pytree_node_class(namespace={ZOO_NAMESPACE!r})
class Box:
    def __init__(self, content, label='box'):
        self.content = content
        self.label = label

    def __repr__(self):
        return f'Box({{self.content!r}}, label={{self.label!r}})'

    def __eq__(self, other):
        return type(other) is Box and (self.content, self.label) == (other.content, other.label)

    __hash__ = None

    def tree_flatten(self):
        if isinstance(self.content, dict):
            keys = sorted(self.content)
            return [self.content[k] for k in keys], {{'label': self.label, 'keys': keys}}, keys
        return (self.content,), {{'label': self.label, 'keys': None}}, None

    @classmethod
    def tree_unflatten(cls, metadata, children):
        children = list(children)
        if metadata['keys'] is None:
            return cls(children[0], label=metadata['label'])
        return cls(dict(zip(metadata['keys'], children)), label=metadata['label'])
"""

# register_pytree_node_class used as a plain call, with a path entry type.
MYVEC_CALL = f"""
class Vec:
    def __init__(self, *xs):
        self.xs = xs

    def __repr__(self):
        return f'Vec{{self.xs!r}}'

    def __eq__(self, other):
        return type(other) is Vec and self.xs == other.xs

    __hash__ = None

    def tree_flatten(self):
        return self.xs, len(self.xs), tuple(range(len(self.xs)))

    @classmethod
    def tree_unflatten(cls, metadata, children):
        return cls(*children)


optree.register_pytree_node_class(
    Vec, path_entry_type=optree.SequenceEntry, namespace={ZOO_NAMESPACE!r}
)
"""

# optree.dataclasses: children and metadata fields, frozen + keyword-only, an init=False field.
DATACLASSES = f"""
@optree.dataclasses.dataclass(namespace={ZOO_NAMESPACE!r})
class Dense:
    weight: object
    bias: object = None
    activation: str = optree.dataclasses.field(default='relu', pytree_node=False)


@optree.dataclasses.dataclass(namespace={ZOO_NAMESPACE!r}, frozen=True, kw_only=True)
class Block:
    name: str = optree.dataclasses.field(pytree_node=False)
    layers: list
    scale: object = 1.0
    cache: object = optree.dataclasses.field(default=None, init=False, pytree_node=False)
"""

SUBCLASSES = """
class SubPoint(Point):
    pass


class MyTuple(tuple):
    pass


class MyList(list):
    pass


class MyDict(dict):
    pass


class MyOrderedDict(OrderedDict):
    pass
"""

ZOO: list[ZooEntry] = [
    # Leaves and None.
    ZooEntry('none', '', 'None'),
    ZooEntry('int', '', '1'),
    ZooEntry('float', '', '-2.5'),
    ZooEntry('str', '', "'leaf'"),
    ZooEntry('bool', '', 'True'),
    ZooEntry('misc-leaves', '', "[b'x', 1j, frozenset({1}), {1, 2}, range(3), Ellipsis, int]"),
    # Empty containers.
    ZooEntry('empty-tuple', '', '()'),
    ZooEntry('empty-list', '', '[]'),
    ZooEntry('empty-dict', '', '{}'),
    ZooEntry('empty-ordereddict', '', 'OrderedDict()'),
    ZooEntry('empty-defaultdict', '', 'defaultdict(list)'),
    ZooEntry('empty-deque', '', 'deque()'),
    ZooEntry('empty-deque-maxlen0', '', 'deque(maxlen=0)'),
    ZooEntry('empty-namedtuple', '', 'Empty()'),
    ZooEntry('nested-empties', '', '[(), [], {}, ((),), [[]], {"a": {}}]'),
    # Sequences.
    ZooEntry('tuple', '', "(1, 2.0, 'three')"),
    ZooEntry('list', '', "[1, 2.0, 'three']"),
    ZooEntry('nested-seq', '', '[1, [2, [3, [4]]], (5, (6,)), []]'),
    ZooEntry('single-tuple', '', '(1,)'),
    # Dicts.
    ZooEntry('dict-sorted-keys', '', "{'b': 1, 'a': [2, 3], 'c': {'z': 4, 'y': None}}"),
    ZooEntry('dict-int-keys', '', "{3: 'c', 1: 'a', 2: 'b'}"),
    ZooEntry('dict-float-int-keys', '', "{1.5: 'a', 1: 'b', -3: 'c'}"),
    ZooEntry('dict-tuple-keys', '', "{(1, 2): 'a', (0, 5): 'b', (0, 1): 'c'}"),
    ZooEntry('dict-noncomparable-keys', '', "{1: 'a', 'b': 2}"),
    ZooEntry('dict-noncomparable-keys-2', '', "{'b': 1, 2: 'x', (1,): 3, None: 4, 'a': 5}"),
    ZooEntry('dict-none-values', '', "{'a': None, 'b': (None, 1), 'c': [None]}"),
    ZooEntry('ordereddict', '', "OrderedDict([('b', 1), ('a', 2), ('c', [3])])"),
    ZooEntry('ordereddict-noncomparable', '', "OrderedDict([(2, 'x'), ('a', 'y')])"),
    ZooEntry('defaultdict-list', '', "defaultdict(list, {'b': [1], 'a': 2})"),
    ZooEntry('defaultdict-none-factory', '', "defaultdict(None, {'y': 1, 'x': (2, 3)})"),
    ZooEntry('defaultdict-int-nested', '', "defaultdict(int, {'k': defaultdict(dict, {1: 2})})"),
    ZooEntry('defaultdict-noncomparable', '', "defaultdict(str, {1: 'a', 'b': 2})"),
    # Deques.
    ZooEntry('deque', '', 'deque([1, 2, (3,)])'),
    ZooEntry('deque-maxlen', '', 'deque([1, [2, 3]], maxlen=5)'),
    ZooEntry('deque-full', '', 'deque(range(3), maxlen=3)'),
    # Namedtuples.
    ZooEntry('namedtuple', '', 'Point(1, (2, 3))'),
    ZooEntry('namedtuple-nested', '', "Triple(Point(1, None), [Point('a', 'b')], {'k': Empty()})"),
    ZooEntry('typing-namedtuple', '', "Pair([1], {'k': 2})"),
    ZooEntry('typing-namedtuple-default', '', 'Pair(Point(0, 0))'),
    # PyStructSequences.
    ZooEntry('struct-time', '', 'time.gmtime(0)'),
    ZooEntry('float-info', '', 'sys.float_info'),
    ZooEntry('stat-result', '', 'os.stat_result(tuple(range(10)))'),
    ZooEntry('terminal-size', '', 'os.terminal_size((80, 24))'),
    ZooEntry(
        'structseq-in-list', '', '[os.terminal_size((1, 2)), {"t": os.terminal_size((3, 4))}]'
    ),
    # Subclasses of node types (namedtuple subclass is a node, others are leaves).
    ZooEntry(
        'subclasses',
        SUBCLASSES,
        '[SubPoint(1, 2), MyTuple((3, 4)), MyList([5]), MyDict(a=6), MyOrderedDict(b=7)]',
    ),
    # Mixed.
    ZooEntry(
        'mixed',
        '',
        "{'x': [Point(1, None), deque([OrderedDict(a=1, b=(2,))])], "
        "'y': (defaultdict(int, {'q': (2,)}), None), 'z': Pair(3, [4.5, 'six'])}",
    ),
    ZooEntry(
        'none-everywhere', '', "[None, (None,), {'a': None}, Point(None, None), deque([None])]"
    ),
    # Custom nodes.
    ZooEntry('custom-entries', MYNODE_WITH_ENTRIES, '[MyNode(1, (2, None)), 3]'),
    ZooEntry(
        'custom-nested', MYNODE_WITH_ENTRIES, "MyNode(MyNode(1, 2), {'k': MyNode([3], None)})"
    ),
    ZooEntry('custom-no-entries', MYBAG_NO_ENTRIES, "{'bag': MyBag(1, (2, 3), None, tag='t')}"),
    ZooEntry('custom-empty', MYBAG_NO_ENTRIES, 'MyBag(tag=0)'),
    ZooEntry(
        'custom-class-decorator', MYCLASS_DECORATED, "(Box({'b': 1, 'a': [2]}), Box(3, label='x'))"
    ),
    ZooEntry('custom-class-call', MYVEC_CALL, 'Vec(1, Vec(2, 3), [Vec()])'),
    ZooEntry(
        'custom-mixed',
        MYNODE_WITH_ENTRIES + MYBAG_NO_ENTRIES,
        "MyBag(MyNode(Point(1, 2), deque([3])), OrderedDict(z=MyBag()), tag=('t', 1))",
    ),
    ZooEntry('dataclass', DATACLASSES, "Dense(1.0, (2, None), activation='gelu')"),
    ZooEntry(
        'dataclass-nested',
        DATACLASSES,
        "Block(name='b0', layers=[Dense(1), Dense({'w': 2}, [3])], scale=Dense(None))",
    ),
    # Wide trees.
    ZooEntry('wide-list', '', 'list(range(300))'),
    ZooEntry('wide-dict', '', "{f'k{i:03d}': i for i in reversed(range(200))}"),
    ZooEntry('wide-tuple-of-lists', '', 'tuple([i, [i]] for i in range(100))'),
    # Moderately deep trees (the repr of the result must stay far from the recursion limit).
    ZooEntry('deep-list-50', '', 'functools.reduce(lambda acc, i: [i, acc], range(50), None)'),
    ZooEntry(
        'deep-dict-40', '', "functools.reduce(lambda acc, i: {'k': acc, 'i': i}, range(40), 0)"
    ),
]

ZOO_BY_ID = {entry.id: entry for entry in ZOO}
assert len(ZOO_BY_ID) == len(ZOO), 'duplicate zoo ids'

# Keyword-argument variants applied to every zoo tree.
VARIANTS: dict[str, str] = {
    'default': '',
    'none_is_leaf': 'none_is_leaf=True',
    'namespace': f'namespace={ZOO_NAMESPACE!r}',
    'none_is_leaf+namespace': f'none_is_leaf=True, namespace={ZOO_NAMESPACE!r}',
    'is_leaf-tuple': 'is_leaf=lambda x: isinstance(x, tuple)',
    'is_leaf-small-list': 'is_leaf=lambda x: isinstance(x, list) and len(x) < 2, '
    f'namespace={ZOO_NAMESPACE!r}',
}
