"""optree.dataclasses (dataclass, field, make_dataclass, register_node): flattening, paths,
accessors, metadata fields, how nodes are rebuilt (the class call), registration errors, compared
with optree 0.20.0 (messages included)."""

from __future__ import annotations

DATACLASS_SETUP = """
import dataclasses
import warnings
from optree import dataclasses as odc
NS = 'dc-tests'


@odc.dataclass(namespace=NS)
class Point3:
    x: float
    y: float
    z: float = 0.0


@odc.dataclass(namespace=NS, frozen=True, kw_only=True)
class Tagged:
    value: object
    tag: str = odc.field(pytree_node=False, default='t')
    cache: object = odc.field(init=False, pytree_node=False, default=None)


Made = odc.make_dataclass('Made', ['p', ('q', int), ('r', int, odc.field(default=5))],
                          namespace=NS)


@dataclasses.dataclass
class Plain:
    u: object
    v: object = dataclasses.field(default=1, metadata={'pytree_node': False})


odc.register_node(Plain, namespace=NS)

TREE = [Point3(1.0, (2.0, None)), Tagged(value={'k': 3}, tag='x'), Made(4, 5), Plain(6, 7)]
leaves, spec = optree.tree_flatten(TREE, namespace=NS)

READS = []


# Records its attribute reads: flatten and unflatten read and pass fields in the same order
# as optree's generated functions (children in field order, then metadata).
@odc.dataclass(namespace=NS)
class Spy:
    a: object
    meta: object = odc.field(default='m', pytree_node=False)
    c: object = 1

    def __getattribute__(self, name):
        if not name.startswith('_'):
            READS.append(name)
        return object.__getattribute__(self, name)

    def __init__(self, **kwargs):
        READS.append(('init', tuple(kwargs)))
        for name, value in kwargs.items():
            object.__setattr__(self, name, value)


def spy_reads(thunk):
    READS.clear()
    value = thunk()
    return value, list(READS)
"""

DATACLASS_EXPRS = [
    '(leaves, spec)',
    'optree.tree_unflatten(spec, leaves)',
    'optree.tree_unflatten(spec, leaves) == TREE',
    'optree.tree_flatten(TREE)',
    'optree.tree_paths(TREE, namespace=NS)',
    'optree.tree_accessors(TREE, namespace=NS)',
    "[a.codify('t') for a in optree.tree_accessors(TREE, namespace=NS)]",
    '[a(TREE) for a in optree.tree_accessors(TREE, namespace=NS)]',
    'optree.tree_map(lambda x: x * 2, TREE, namespace=NS)',
    'Tagged.__optree_dataclass_fields__',
    'dataclasses.fields(Made)',
    'Made.__module__',
    'odc.field(pytree_node=False).metadata',
    'odc.field(init=False)',
    'odc.field(default=1, metadata={"a": 1}).metadata',
    'odc.field(default=1, metadata={"pytree_node": False}).metadata',
    'odc.register_node(Point3, namespace=NS)',
    'odc.register_node(int, namespace=NS)',
    'odc.register_node(Point3)',
    "odc.register_node('ns', namespace='ns')",
    "odc.register_node('')",
    'odc.dataclass(1, namespace=NS)',
    'odc.dataclass(namespace=NS)(1)',
    'odc.dataclass(Point3)',
    "odc.dataclass(namespace=1)(type('N1', (), {'__annotations__': {'a': int}}))",
    "odc.make_dataclass('M2', ['a'], namespace=NS, ns={'method': lambda self: self.a})(1).method()",
    "odc.make_dataclass('M3', ['a'], namespace=NS, module='some.module').__module__",
    "odc.make_dataclass('M4', ['a'])",
    "optree.tree_flatten(odc.register_node('deco-dc')(dataclasses.dataclass(type('D1', (), "
    "{'__annotations__': {'a': int}})))(a=1), namespace='deco-dc')",
    "odc.register_node(dataclasses.dataclass(type('IV', (), {'__annotations__': "
    "{'a': int, 'b': dataclasses.InitVar[int]}})), namespace=NS)",
    "odc.register_node(dataclasses.dataclass(type('NI', (), {'__annotations__': {'a': int}, "
    "'a': dataclasses.field(init=False, default=0)})), namespace=NS)",
    'with warnings.catch_warnings(record=True) as caught:\n'
    "    warnings.simplefilter('always')\n"
    "    odc.dataclass(init=False, namespace=NS)(type('NoInit', (), {'__annotations__': "
    "{'a': int}}))\n"
    'result = [(w.category.__name__, str(w.message)) for w in caught]\n',
    # '' is the global namespace; unregister again, so that no later test sees the class.
    "G = odc.dataclass(namespace='')(type('G', (), {'__annotations__': {'a': int}}))\n"
    'result = optree.tree_flatten(G(a=1))\n'
    "optree.unregister_pytree_node(G, namespace=getattr(optree.registry, '__GLOBAL_NAMESPACE'))\n",
    'pickle.loads(pickle.dumps(spec)) == spec',
    'sorted(set(odc.__all__) - set(dataclasses.__all__))',
    "spy_reads(lambda: optree.tree_flatten(Spy(a=[1], meta='x', c=(2,)), namespace=NS))",
    'spy_reads(lambda: optree.tree_flatten_with_path(Spy(a=1, c=2), namespace=NS))',
    'spy_reads(lambda: optree.tree_map(str, Spy(a=1, c=2), namespace=NS))',
    # A missing field fails the flatten with the attribute lookup's own error.
    'p = Point3(1.0, 2.0)\ndel p.y\nresult = optree.tree_flatten([p], namespace=NS)',
    "t = Tagged(value=1)\nobject.__delattr__(t, 'tag')\n"
    'result = optree.tree_leaves(t, namespace=NS)',
    # The class's own __init__ errors reach the caller of unflatten.
    'optree.tree_unflatten(optree.tree_structure(Point3(1, 2), namespace=NS), ["x", "y", "z"])',
]


def test_dataclasses(differential):
    differential.check(DATACLASS_SETUP, DATACLASS_EXPRS, check_message=True)


# Treespecs whose dataclass nodes carry metadata other than what flatten makes (from a crafted
# pickle state) rebuild as the registered unflatten function does: dict(metadata) semantics.
RESTATED_SETUP = (
    DATACLASS_SETUP
    + """
def restated(spec, metadata):
    nodes, none_is_leaf, namespace = spec.__reduce__()[2]
    root = list(nodes[-1])
    root[2] = metadata
    copy = optree.PyTreeSpec.__new__(optree.PyTreeSpec)
    copy.__setstate__((nodes[:-1] + (tuple(root),), none_is_leaf, namespace))
    return copy


TAGGED = optree.tree_structure(Tagged(value=1, tag='t'), namespace=NS)
"""
)

RESTATED_EXPRS = [
    "optree.tree_unflatten(restated(TAGGED, [('tag', 'list')]), [1])",
    "optree.tree_unflatten(restated(TAGGED, (['tag', 'pair-list'],)), [1])",
    "optree.tree_unflatten(restated(TAGGED, (('tag', 'a'), ('tag', 'b'))), [1])",
    "optree.tree_unflatten(restated(TAGGED, (('value', 'overrides the child'),)), [1])",
    "optree.tree_unflatten(restated(TAGGED, (('other', 1),)), [1])",
    'optree.tree_unflatten(restated(TAGGED, ()), [1])',
    'optree.tree_unflatten(restated(TAGGED, None), [1])',
    "optree.tree_unflatten(restated(TAGGED, (('tag', 'x'), 1)), [1])",
    "optree.tree_map(str, optree.tree_unflatten(restated(TAGGED, [('tag', 'm')]), [1]),"
    ' namespace=NS)',
]


def test_dataclass_nodes_with_other_metadata(differential):
    differential.check(RESTATED_SETUP, RESTATED_EXPRS, check_message=True)


# How a dataclass node is rebuilt depends on how its class is called: all these must behave
# as the class call `cls(**fields)` of optree's unflatten function.
CONSTRUCTION_SETUP = """
import abc
from optree import dataclasses as odc
CALLS = []


class CountingMeta(type):
    def __call__(cls, *args, **kwargs):
        CALLS.append(('meta', cls.__name__, args, tuple(kwargs)))
        return super().__call__(*args, **kwargs)


@odc.dataclass(namespace='ctor')
class Metaclassed(metaclass=CountingMeta):
    x: object


@odc.dataclass(namespace='ctor')
class WithNew:
    x: object

    def __new__(cls, *args, **kwargs):
        CALLS.append(('new', args, tuple(kwargs)))
        return super().__new__(cls)


@odc.dataclass(namespace='ctor')
class BadInit:
    x: object

    def __init__(self, x):
        self.x = x
        return 1


@odc.dataclass(namespace='ctor')
class PostInit:
    x: object
    doubled: object = odc.field(default=None, init=False, pytree_node=False)

    def __post_init__(self):
        CALLS.append(('post', self.x))
        self.doubled = self.x * 2


@odc.dataclass(namespace='ctor')
class Abstract(abc.ABC):
    x: object

    @abc.abstractmethod
    def method(self): ...


@odc.dataclass(namespace='ctor', frozen=True)
class FrozenSlots:
    __slots__ = ('x', 'y')
    x: object
    y: object


def rebuilt(tree, leaves):
    CALLS.clear()
    spec = optree.tree_structure(tree, namespace='ctor')
    return optree.tree_unflatten(spec, leaves), list(CALLS)
"""

CONSTRUCTION_EXPRS = [
    'rebuilt(Metaclassed(1), [2])',
    'rebuilt(WithNew(1), [2])',
    'b = BadInit.__new__(BadInit)\nb.x = 1\nresult = rebuilt(b, [2])',
    'rebuilt(PostInit(1), [21])',
    'rebuilt(FrozenSlots(1, (2,)), [3, 4])',
    'Abstract.__abstractmethods__ = frozenset()\na = Abstract(1)\n'
    "Abstract.__abstractmethods__ = frozenset({'method'})\n"
    'result = rebuilt(a, [2])',
    "optree.tree_map(lambda x: x + 1, [PostInit(1), FrozenSlots(2, 3)], namespace='ctor')",
]


def test_dataclass_nodes_rebuilt_as_their_class_call(differential):
    differential.check(CONSTRUCTION_SETUP, CONSTRUCTION_EXPRS, check_message=True)


# An attribute lookup of flatten that unregisters the class: the node flattens with the
# registration it started with, and the next one sees the change.
UNREGISTERING_SETUP = """
from optree import dataclasses as odc


@odc.dataclass(namespace='unreg')
class Fickle:
    x: object
    y: object = odc.field(default=0, pytree_node=False)

    def __getattr__(self, name):
        optree.unregister_pytree_node(Fickle, namespace='unreg')
        return name


first = Fickle(1)
del first.x
second = Fickle(2)
"""


def test_dataclass_unregistered_by_its_own_attribute_lookup(differential):
    differential.check(
        UNREGISTERING_SETUP,
        "optree.tree_flatten([first, second], namespace='unreg')",
        isolated=True,
    )
