"""The core's fast paths agree with optree 0.20.0 where they could plausibly diverge.

Namedtuples are rebuilt without calling their generated ``__new__``, and tuple subclasses are
classified once per type version; dicts are rebuilt in insertion order from a permutation found
by key identity; dicts whose keys are exact str or int already in order are not sorted. Each case
below is one way those shortcuts could go wrong.
"""

from __future__ import annotations

NAMEDTUPLE_VARIANTS = """
import typing

NT = collections.namedtuple('NT', 'a b')

class NewOverride(NT):
    def __new__(cls, a, b):
        calls.append('NewOverride.__new__')
        return super().__new__(cls, a, b)

class InitOverride(NT):
    def __init__(self, *args):
        calls.append(('InitOverride.__init__', args))

class Slotted(NT):
    __slots__ = ()

class WithDict(NT):
    pass

class Typed(typing.NamedTuple):
    x: int
    y: int = 0

class Meta(type):
    def __call__(cls, *args):
        calls.append('Meta.__call__')
        return super().__call__(*args)

class WithMeta(collections.namedtuple('WithMetaBase', 'p q'), metaclass=Meta):
    pass

Defaults = collections.namedtuple('Defaults', 'a b c', defaults=(3,))
calls = []

def round_trip(tree):
    leaves, spec = optree.tree_flatten(tree)
    rebuilt = spec.unflatten([('new', leaf) for leaf in leaves])
    return type(rebuilt).__name__, rebuilt, vars(rebuilt) if hasattr(rebuilt, '__dict__') else None
"""

NAMEDTUPLE_EXPRS = [
    'round_trip(NT(1, 2)), calls',
    'round_trip(NewOverride(1, 2)), calls',
    'round_trip(InitOverride(1, 2)), calls',
    'round_trip(Slotted(1, 2))',
    'round_trip(WithDict(1, 2))',
    'round_trip(Typed(1))',
    'round_trip(WithMeta(1, 2)), calls',
    'round_trip(Defaults(1, 2))',
    # An instance whose length is not the field count: rebuilding calls __new__, which fails.
    'round_trip(tuple.__new__(NT, (1, 2, 3)))',
    'optree.tree_map(lambda x: x + 1, [NT(1, 2), InitOverride(3, 4), NewOverride(5, 6)]), calls',
    'optree.tree_structure(NT(1, 2)).flatten_up_to(NT([1], 2))',
    'optree.tree_structure(NT(1, 2)).flatten_up_to(Slotted(1, 2))',
]


def test_namedtuple_rebuilding(differential):
    differential.check(NAMEDTUPLE_VARIANTS, NAMEDTUPLE_EXPRS)


def test_namedtuple_classes_changed_after_use(differential):
    setup = (
        NAMEDTUPLE_VARIANTS
        + """
spec = optree.tree_structure(NT(1, 2))
first = spec.unflatten([1, 2])

def patched_new(cls, a, b):
    calls.append('patched __new__')
    return tuple.__new__(cls, (b, a))

NT.__new__ = patched_new
second = spec.unflatten([1, 2])
NT.__init__ = lambda self, *args: calls.append('patched __init__')
third = spec.unflatten([1, 2])
"""
    )
    differential.check(setup, ['(first, second, third, calls)', 'optree.tree_flatten(NT(1, 2))'])


DICT_SETUP = """
keys = ['b', 'a', 'c', 10, 2]
tree = {k: i for i, k in enumerate(['zz', 'a', 'm', 'b'])}
mixed = {k: [k] for k in keys if not isinstance(k, int)}
spec = optree.tree_structure(tree)
unpickled = pickle.loads(pickle.dumps(spec))
dd = collections.defaultdict(list, {'y': 1, 'x': 2})
"""

DICT_EXPRS = [
    'list(spec.unflatten(range(4)).items())',
    'list(unpickled.unflatten(range(4)).items())',
    'list(optree.tree_map(lambda x: -x, tree).items())',
    'list(optree.tree_map(lambda x: x, mixed).items())',
    'list(optree.tree_map(lambda x: x, dd).items()), '
    'optree.tree_map(lambda x: x, dd).default_factory',
    'list(optree.tree_structure(dd).unflatten([5, 6]).items())',
    "list(optree.tree_map(lambda x: x, {1: 'a', 'x': 'b', (2,): 'c'}).items())",
    'list(optree.tree_structure(collections.OrderedDict(b=1, a=2)).unflatten([3, 4]).items())',
]


def test_dict_rebuilding_order(differential):
    differential.check(DICT_SETUP, DICT_EXPRS)


FLATTEN_UP_TO_SETUP = """
class KeyDict(dict):
    def __getitem__(self, key):
        return ('via __getitem__', dict.__getitem__(self, key))

class OD(collections.OrderedDict):
    pass

spec = optree.tree_structure({'a': 1, 'b': (2, 3), 'c': [4]})
"""

FLATTEN_UP_TO_EXPRS = [
    "spec.flatten_up_to({'c': [[4]], 'b': (2, {'x': 3}), 'a': None})",
    'spec.flatten_up_to(KeyDict(a=1, b=(2, 3), c=[4]))',
    'spec.flatten_up_to(OD(a=1, b=(2, 3), c=[4]))',
    'spec.flatten_up_to([1, (2, 3), [4]])',
    "optree.tree_structure(OD(a=1)).flatten_up_to({'a': [1]})",
    'spec.flatten_up_to(collections.OrderedDict(c=[4], b=(2, 3), a=1))',
    'spec.flatten_up_to(collections.defaultdict(int, a=1, b=(2, 3), c=[4]))',
    "spec.flatten_up_to({'a': 1, 'b': (2, 3)})",
    "spec.flatten_up_to({'a': 1, 'b': (2, 3), 'c': [4], 'd': 5})",
    "spec.flatten_up_to({'a': 1, 'b': (2, 3), 'x': [4]})",
    "spec.flatten_up_to({'a': 1, 'b': [2, 3], 'c': [4]})",
    "spec.flatten_up_to({'a': 1, 'b': (2, 3), 'c': (4,)})",
]


def test_flatten_up_to_dict_matching(differential):
    differential.check(FLATTEN_UP_TO_SETUP, FLATTEN_UP_TO_EXPRS, check_message=True)


REGISTRY_CHANGES_SETUP = """
NS = 'fast-paths'

class Late:
    def __init__(self, *items):
        self.items = items

    def __repr__(self):
        return f'Late{self.items!r}'

class Trigger:
    def __repr__(self):
        return 'Trigger()'

def flatten_trigger(trigger):
    # Makes Late a node type in the middle of a flatten that has seen Late leaves already.
    optree.register_pytree_node(
        Late, lambda late: (late.items, None), lambda _, items: Late(*items), namespace=NS
    )
    return (), None

optree.register_pytree_node(Trigger, flatten_trigger, lambda _, __: Trigger(), namespace=NS)

def run(function):
    try:
        return function([Late(1), Late(2), Trigger(), Late(3, 4), 5], namespace=NS)
    finally:
        optree.unregister_pytree_node(Late, namespace=NS)
"""


def test_registry_change_during_flatten_is_seen(differential):
    differential.check(
        REGISTRY_CHANGES_SETUP,
        ['run(optree.tree_flatten)', 'run(optree.tree_leaves)', 'run(optree.tree_structure)'],
    )


LEAVES_MUTATION_SETUP = """
NS = 'fast-paths-mutation'

class Holder:
    def __init__(self, *children):
        self.children = children

    def __repr__(self):
        return f'Holder{self.children!r}'

def run(mutation):
    leaves = [1, 2, 3, 4]

    def unflatten(_, children):
        # Rebuilding runs Python code, which may change the very list being read.
        if mutation == 'clear':
            leaves.clear()
        elif mutation == 'extend':
            leaves.extend(range(100))
        elif mutation == 'pop':
            leaves.pop()
        return Holder(*children)

    optree.register_pytree_node(Holder, lambda h: (h.children, None), unflatten, namespace=NS)
    try:
        spec = optree.tree_structure([Holder(1, 2), 3, 4], namespace=NS)
        return spec.unflatten(leaves)
    finally:
        optree.unregister_pytree_node(Holder, namespace=NS)
"""


def test_leaves_list_changed_while_rebuilding(differential):
    differential.check(
        LEAVES_MUTATION_SETUP,
        ["run('clear')", "run('extend')", "run('pop')", "run('none')"],
        isolated=True,
    )


# Dicts whose keys are already in sorted order keep their key list as it is (no sort, no copy);
# the treespecs and rebuilt dicts must not show it.
SORTED_KEYS_EXPRS = [
    "optree.tree_flatten({'a': 1, 'b': 2, 'c': 3})",
    "optree.tree_flatten({'c': 1, 'b': 2, 'a': 3})",
    "optree.tree_flatten({'a': 1, 'c': 2, 'b': 3})",
    'optree.tree_flatten({1: 1, 2: 2, 10: 3})',
    'optree.tree_flatten({10: 1, 2: 2, 1: 3})',
    'optree.tree_flatten({-1: 1, 2**70: 2, 0: 3})',
    "optree.tree_flatten({'a': 1, 2: 2})",
    "optree.tree_flatten({2: 1, 'a': 2})",
    'optree.tree_flatten({True: 1, 2: 2})',
    'optree.tree_flatten({1.5: 1, 2: 2})',
    "optree.tree_flatten({'a': 1, 'é': 2, 'z': 3, '\U0001f600': 4, 'Z': 5})",
    "optree.tree_unflatten(optree.tree_structure({'b': 1, 'a': 2}), [10, 20])",
    "optree.tree_unflatten(optree.tree_structure({'a': 1, 'b': 2}), [10, 20])",
    "optree.tree_map(lambda x: x, {'b': {'y': 1, 'x': 2}, 'a': {'x': 3, 'y': 4}})",
    "optree.tree_flatten(collections.defaultdict(int, {'b': 1, 'a': 2}))",
    "optree.tree_flatten(collections.defaultdict(int, {'a': 1, 'b': 2}))",
    "optree.tree_structure({'a': 1, 'b': 2}) == optree.tree_structure({'b': 1, 'a': 2})",
    "optree.tree_structure({'a': 1, 'b': 2}).unflatten([3, 4])",
]


def test_dict_keys_already_sorted(differential):
    differential.check('', SORTED_KEYS_EXPRS, check_message=True)
