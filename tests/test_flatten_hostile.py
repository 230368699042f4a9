"""Hostile inputs on the flatten / unflatten / flatten_up_to paths, and argument handling.

Python code run by the core (leaf predicates, custom flatten and unflatten functions, key
hashing, reprs, metaclass properties) may change the objects being walked, or look for the
core's own containers through ``gc.get_objects()``. Whatever it does must end in the same
result or exception as optree 0.20.0, never in a crash or a hang. Every case that could crash
evaluates our side in a child process.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap

import pytest

from harness.differential import run_ours_isolated
from harness.snippets import NODE_CLASS, recording_node

# ---------------------------------------------------------------------------------------------
# A namedtuple class whose `_fields` changes after a treespec of it was built
# ---------------------------------------------------------------------------------------------

DIVERGED_FIELDS = {
    'shorter': "('x',)",
    'longer': "('x', 'y', 'z', 'w')",
    'renamed': "('a', 'b', 'c')",
    'empty': '()',
}

# What is read from `_fields` (or depends on it) after the change.
DIVERGED_FIELDS_EXPRS = [
    'repr(spec)',
    'str(spec)',
    'optree.tree_unflatten(spec, [1, 2, 3])',
    'spec.entries()',
    'optree.tree_paths(tree)',
    'optree.tree_structure(P(1, (2,), 3)) == spec',
    'optree.tree_leaves(tree)',
    'optree.namedtuple_fields(P)',
    'optree.is_namedtuple(P)',
    'optree.tree_accessors(tree)',
    'optree.treespec_accessors(spec)',
    'optree.tree_map(lambda x: x, tree)',
    'optree.tree_map_with_path(lambda p, x: p, tree)',
    'spec.flatten_up_to(tree)',
    'spec.children()',
    'list(optree.tree_iter(tree))',
    'hash(spec) == hash(spec)',
    'spec.transform(lambda s: s)',
    'spec.walk([1, 2, 3], lambda t, m, c: c, None)',
]


@pytest.mark.parametrize('fields', list(DIVERGED_FIELDS))
def test_namedtuple_fields_changed_after_the_treespec(differential, fields):
    setup = textwrap.dedent(
        f"""
        P = namedtuple('P', ['x', 'y', 'z'])
        tree = P(1, (2,), 3)
        spec = optree.tree_structure(tree)
        P._fields = {DIVERGED_FIELDS[fields]}
        """,
    )
    differential.check(setup, DIVERGED_FIELDS_EXPRS, isolated=True)
    # The repr names the cause, as optree's does.
    differential.check(setup, ['repr(spec)'], isolated=True, check_message=True)


# ---------------------------------------------------------------------------------------------
# Containers of the core seen by Python code while they are being filled
# ---------------------------------------------------------------------------------------------

# Reads every list of exactly N items that the garbage collector knows: a list with an empty
# slot crashes the interpreter here.
READ_LISTS_OF_N = textwrap.dedent(
    """
    import gc

    N = 1237


    def read_lists_of_n():
        for obj in gc.get_objects():
            if type(obj) is list and len(obj) == N:
                list(obj)
    """,
)


def _assert_ours_completes(setup: str, expr: str, expected: str) -> None:
    (outcome,) = run_ours_isolated([(setup, expr)])
    assert outcome['ok'], outcome
    assert outcome['repr'] == expected, outcome


def test_flatten_up_to_hides_its_result_list_from_key_hashing():
    setup = READ_LISTS_OF_N + textwrap.dedent(
        """
        captured = []


        class Key:
            def __hash__(self):
                read_lists_of_n()
                captured.extend(
                    obj for obj in gc.get_objects() if type(obj) is list and len(obj) == N
                )
                return 0

            def __eq__(self, other):
                return isinstance(other, Key)


        spec = optree.tree_structure(({Key(): (1, 2, 3)}, tuple(range(N - 3))))
        """,
    )
    # A mismatch found after Key.__hash__ ran: the list of the failed call must not survive
    # half filled either.
    expr = textwrap.dedent(
        """
        try:
            spec.flatten_up_to(({Key(): (1, 2)}, tuple(range(N - 3))))
        except ValueError:
            pass
        for lst in captured:
            list(lst)
        leaves = spec.flatten_up_to(({Key(): (1, 2, 3)}, tuple(range(N - 3))))
        result = (len(leaves), leaves[:4])
        """,
    )
    _assert_ours_completes(setup, expr, '(1237, [1, 2, 3, 0])')


def test_flatten_up_to_hides_its_result_list_from_custom_flatten_functions():
    setup = READ_LISTS_OF_N + textwrap.dedent(
        """
        class Box:
            def __init__(self, value):
                self.value = value

            def __repr__(self):
                read_lists_of_n()
                return 'Box(...)'


        def flatten_box(box):
            read_lists_of_n()
            return (box.value,), 'meta'


        optree.register_pytree_node(
            Box, flatten_box, lambda meta, children: Box(*children), namespace='hostile-box'
        )
        spec = optree.tree_structure(
            [Box(0), *range(N - 2), Box(1)], namespace='hostile-box'
        )
        """,
    )
    expr = textwrap.dedent(
        """
        leaves = spec.flatten_up_to([Box(0), *range(N - 2), Box(1)])
        try:  # the repr of a mismatch message runs Python code too
            spec.flatten_up_to([Box(0), *range(N - 2), (1,)])
        except ValueError:
            pass
        result = (len(leaves), leaves[-2:])
        """,
    )
    _assert_ours_completes(setup, expr, '(1237, [1234, 1])')


def test_sorting_mixed_dict_keys_hides_its_work_list_from_metaclass_code():
    # Keys that do not compare are sorted by (type name, key); the type name is looked up on
    # the key's class, where a metaclass property runs Python code.
    setup = READ_LISTS_OF_N + textwrap.dedent(
        """
        class Meta(type):
            @property
            def __module__(cls):
                read_lists_of_n()
                return 'hostile'


        class K(metaclass=Meta):
            def __repr__(self):
                return 'K()'


        tree = dict.fromkeys(range(N - 1), 0)
        tree[K()] = 1
        """,
    )
    expr = 'leaves, spec = optree.tree_flatten(tree)\nresult = (len(leaves), leaves[-2:])\n'
    _assert_ours_completes(setup, expr, '(1237, [0, 1])')


# ---------------------------------------------------------------------------------------------
# unflatten reads an iterable lazily
# ---------------------------------------------------------------------------------------------

COUNTING_SETUP = (
    textwrap.dedent(
        """
        events = []


        def counting(items):
            for item in items:
                events.append(('leaf', item))
                yield item

        """
    )
    + recording_node('hostile-lazy', 'node')
    + textwrap.dedent(
        """
        NS = 'hostile-lazy'
        spec = optree.tree_structure([Node(1, 2), (3, Node(4)), 5], namespace=NS)
        """
    )
)


def test_unflatten_stops_reading_an_endless_iterator(differential):
    differential.check(
        COUNTING_SETUP,
        [
            'spec.unflatten(itertools.count())',
            'optree.tree_unflatten(spec, itertools.count())',
            'optree.tree_unflatten(optree.tree_structure(1), itertools.repeat(0))',
            'optree.tree_unflatten(optree.tree_structure(()), itertools.count())',
        ],
        isolated=True,
        check_message=True,
    )


def test_unflatten_reads_one_item_past_the_leaves(differential):
    exprs = [
        # Exactly num_leaves + 1 items are pulled, however many there are.
        'try:\n    spec.unflatten(counting(itertools.count()))\nexcept ValueError:\n    pass\n'
        'result = len(events)\n',
        # The containers are built as the leaves arrive, in the order optree builds them.
        'result = (spec.unflatten(counting(range(5))), events)\n',
        'try:\n    spec.unflatten(counting(range(3)))\nexcept ValueError as ex:\n'
        '    result = (str(ex), events)\n',
        'try:\n    spec.unflatten(counting(range(7)))\nexcept ValueError as ex:\n'
        '    result = (str(ex), events)\n',
        # tree_map feeds unflatten a map object: the function runs interleaved as well.
        'tree = [Node(1, 2), (3, Node(4)), 5]\n'
        "mapped = optree.tree_map(lambda x: events.append(('f', x)) or x, tree, namespace=NS)\n"
        'result = (mapped, events)\n',
    ]
    differential.check(COUNTING_SETUP, exprs, isolated=True)


RESUMING_ITERATOR_SETUP = (
    textwrap.dedent(
        """
        events = []


        class Resuming:
            # Raises StopIteration at each 'STOP' item and then goes on, as map() does when its
            # function raises StopIteration.
            def __init__(self, items):
                self.items = list(items)
                self.index = 0

            def __iter__(self):
                return self

            def __next__(self):
                events.append(('next', self.index))
                index = self.index
                self.index += 1
                if index >= len(self.items) or self.items[index] == 'STOP':
                    raise StopIteration
                return self.items[index]
        """
    )
    + recording_node('hostile-resuming', 'unflatten')
    + textwrap.dedent(
        """
        def run(tree, items):
            events.clear()
            spec = optree.tree_structure(tree, namespace='hostile-resuming')
            try:
                result = spec.unflatten(Resuming(items))
            except ValueError as ex:
                result = str(ex)
            return result, list(events)
        """
    )
)


def test_unflatten_iterator_resuming_after_stop_iteration(differential):
    # optree reads through a pybind11 iterator: the first item when the first leaf is reached
    # (after the containers before it are built), and once more before a leaf or the end when
    # the last read found no item.
    differential.check(
        RESUMING_ITERATOR_SETUP,
        [
            'run([Node(), 1], [1])',
            'run([Node(), 1], [])',
            'run([Node(), Node()], [])',
            'run([Node(), Node()], [5])',
            "run([1, 2, 3], [1, 'STOP', 2, 3])",
            "run([1, 2, 3], [1, 2, 3, 'STOP', 4])",
            "run([1, 2, 3], [1, 2, 3, 'STOP', 'STOP'])",
            "run([1, 2, 3], [1, 2, 'STOP', 'STOP', 3])",
            "run([1, 2, 3], ['STOP', 1, 2, 3])",
            "run([Node(1, 2), 3], [1, 'STOP', 2, 3])",
            "run([Node(1, 2), (3, Node(4)), 5], [1, 'STOP', 2, 'STOP', 3, 4, 5, 'STOP', 6])",
        ],
        check_message=True,
    )


def test_unflatten_iterates_sequences_of_other_types(differential):
    setup = textwrap.dedent(
        """
        class Backwards(list):
            def __iter__(self):
                return reversed(list(super().__iter__()))


        class Forwards(tuple):
            def __iter__(self):
                return iter(('a', 'b', 'c'))


        spec = optree.tree_structure([1, (2, 3)])
        """,
    )
    differential.check(
        setup,
        [
            'spec.unflatten(Backwards([1, 2, 3]))',
            'spec.unflatten(Forwards((1, 2, 3)))',
            "spec.unflatten('xyz')",
            "spec.unflatten({'a': 1, 'b': 2, 'c': 3})",
            'spec.unflatten(range(3))',
            'spec.unflatten(3)',
            'spec.unflatten(None)',
        ],
        isolated=True,
    )


# ---------------------------------------------------------------------------------------------
# A list changed while it is being flattened
# ---------------------------------------------------------------------------------------------

MUTATING_PREDICATES = {
    # Shrinks the list at its first item: the next index is past its end.
    'shrink': 'def is_leaf(x):\n    if x == 0:\n        del lst[1:]\n    return False\n',
    # Grows it: the items appended are not visited.
    'grow': 'def is_leaf(x):\n    if x == 0:\n        lst.extend([8, 9])\n    return False\n',
    # Replaces a later item: the new one is visited.
    'replace': "def is_leaf(x):\n    if x == 0:\n        lst[3] = ('new', [3])\n    return False\n",
    # Empties it from a nested item.
    'clear-nested': 'def is_leaf(x):\n    if x == 2:\n        lst.clear()\n    return False\n',
}

LIST_OPS = [
    'optree.tree_flatten(lst, is_leaf=is_leaf)',
    'optree.tree_leaves(lst, is_leaf=is_leaf)',
    'optree.tree_structure(lst, is_leaf=is_leaf)',
    'optree.tree_flatten_with_path(lst, is_leaf=is_leaf)',
    'optree.tree_map(lambda x: x, lst, is_leaf=is_leaf)',
    'optree.tree_paths(lst, is_leaf=is_leaf)',
    'list(optree.tree_iter(lst, is_leaf=is_leaf))',
    '(optree.tree_leaves(lst, is_leaf=is_leaf), lst)',
]


@pytest.mark.parametrize('mutation', list(MUTATING_PREDICATES))
def test_list_changed_by_the_leaf_predicate(differential, mutation):
    setup = "lst = [0, 1, (2, [2.5]), 3, {'k': 4}, 5, 6, 7]\n" + MUTATING_PREDICATES[mutation]
    differential.check(setup, LIST_OPS, isolated=True, check_message=True)


def test_list_shrunk_by_the_leaf_predicate_raises_index_error(differential):
    setup = MUTATING_PREDICATES['shrink'] + 'lst = [0, 1, 2, 3, 4, 5, 6, 7]\n'
    for op in LIST_OPS[:6]:
        ours = differential.check_raises(setup, op, IndexError, check_message=True)
        assert ours['message'] == 'list index out of range'


DICT_MUTATIONS = {
    # A value replaced before it is reached is the one visited.
    'replace': "d['c'] = ('new', [9])",
    # Keys added are not visited.
    'add': "d['z'] = 5",
    # A key removed before it is reached raises KeyError.
    'remove': "del d['c']",
    'clear': 'd.clear()',
}


@pytest.mark.parametrize('mutation', list(DICT_MUTATIONS))
@pytest.mark.parametrize(
    'make',
    ['dict', 'OrderedDict', 'functools.partial(defaultdict, list)'],
    ids=['dict', 'OrderedDict', 'defaultdict'],
)
def test_dict_changed_by_the_leaf_predicate(differential, mutation, make):
    setup = textwrap.dedent(
        f"""
        d = ({make})([('b', 1), ('a', 0), ('c', 2)])


        def is_leaf(x):
            if x == 0:
                {DICT_MUTATIONS[mutation]}
            return False
        """,
    )
    exprs = [op.replace('lst', 'd') for op in LIST_OPS]
    if mutation in ('replace', 'add') or sys.version_info >= (3, 13):
        differential.check(setup, exprs, isolated=True, check_message=True)
        return
    # Before 3.13 optree's error for a removed key is a RuntimeError from pybind11 ("Unable to
    # convert call argument"); ours is the KeyError optree raises from 3.13 on.
    cases = [(setup, expr) for expr in exprs]
    theirs = differential.server.collect(differential.server.submit(cases))
    for expr, ours, reference in zip(exprs, run_ours_isolated(cases), theirs, strict=True):
        if reference['ok']:  # tree_iter: the values were taken before the change
            assert ours == reference, expr
            continue
        assert reference['exc_type'] == 'RuntimeError', (expr, reference)
        assert ours['exc_type'] == 'KeyError', (expr, ours)
        assert ours['message'] in ("'b'", "'c'"), (expr, ours)


def test_list_changed_by_a_custom_flatten_function(differential):
    setup = textwrap.dedent(
        """
        class Cut:
            def __init__(self, value):
                self.value = value


        def flatten_cut(cut):
            del outer[2:]
            return (cut.value,), None


        optree.register_pytree_node(
            Cut, flatten_cut, lambda meta, children: Cut(*children), namespace='hostile-cut'
        )


        class Grow:
            def __init__(self, value):
                self.value = value


        def flatten_grow(grow):
            outer.append(99)
            children.append('late')
            return children, None


        children = ['early']
        optree.register_pytree_node(
            Grow, flatten_grow, lambda meta, children: Grow(*children), namespace='hostile-cut'
        )
        """,
    )
    differential.check(
        setup,
        [
            "outer = [Cut(1), 2, 3]\nresult = optree.tree_leaves(outer, namespace='hostile-cut')\n",
            "outer = [Cut(1), 2]\nresult = optree.tree_leaves(outer, namespace='hostile-cut')\n",
            "outer = [1, Grow(2), 3]\nresult = optree.tree_flatten(outer, namespace='hostile-cut')",
        ],
        isolated=True,
        check_message=True,
    )


def test_from_collection_with_a_flatten_function_that_changes_its_mind():
    # treespec_from_collection runs the flatten function twice here (once in optree): a second
    # answer with another number of children must not give a node that does not match its
    # subtrees (its repr then read past them).
    setup = textwrap.dedent(
        """
        calls = itertools.count()


        class Box:
            def __init__(self, *children):
                self.children = children


        def flatten_box(box):
            twice = next(calls) % 2 == 1
            return (box.children * 2 if twice else box.children), None


        optree.register_pytree_node(
            Box, flatten_box, lambda meta, children: Box(*children), namespace='hostile-twice'
        )
        leaf = optree.treespec_leaf()
        """,
    )
    expr = textwrap.dedent(
        """
        try:
            spec = optree.treespec_from_collection(Box(leaf, leaf), namespace='hostile-twice')
            result = (repr(spec), spec.num_children, spec.num_leaves)
        except RuntimeError as ex:
            result = str(ex)
        """,
    )
    (outcome,) = run_ours_isolated([(setup, expr)])
    assert outcome['ok'], outcome
    assert 'returned a different number of children (4) than before (2)' in outcome['repr']


# ---------------------------------------------------------------------------------------------
# walk() hands f_node the key lists of dict nodes
# ---------------------------------------------------------------------------------------------


def test_walk_metadata_changes_leave_the_treespec_intact():
    # optree hands f_node the treespec's own key list, whose later use then fails; here f_node
    # gets a copy (an intended difference: nothing changes behind the treespec's back).
    setup = textwrap.dedent(
        """
        tree = {'b': 1, 'a': 2, 'c': defaultdict(list, {'y': 3, 'x': 4}), 'd': OrderedDict(q=5)}
        leaves, spec = optree.tree_flatten(tree)
        before = (repr(spec), spec.entries(), optree.tree_unflatten(spec, leaves), hash(spec))


        def f_node(node_type, metadata, children):
            if isinstance(metadata, list):
                metadata.clear()
            elif isinstance(metadata, tuple):
                metadata[1].clear()
            return node_type
        """,
    )
    expr = textwrap.dedent(
        """
        spec.walk(leaves, f_node, None)
        after = (repr(spec), spec.entries(), optree.tree_unflatten(spec, leaves), hash(spec))
        result = after == before
        """,
    )
    _assert_ours_completes(setup, expr, 'True')


# ---------------------------------------------------------------------------------------------
# Argument handling: namespaces and flags
# ---------------------------------------------------------------------------------------------

NAMESPACE_SETUP = (
    textwrap.dedent(
        """
        class Name(str):
            def __eq__(self, other):
                return False

            __hash__ = str.__hash__
        """
    )
    + NODE_CLASS
    + textwrap.dedent(
        """
        optree.register_pytree_node(
            Node,
            lambda n: (n.children, 'meta'),
            lambda meta, children: Node(*children),
            namespace=Name('hostile-names'),
        )
        tree = {'b': Node(1, [2]), 'a': (3, None)}
        """
    )
)


@pytest.mark.parametrize(
    'namespace',
    [
        "Name('hostile-names')",
        "'hostile-names'",
        "b'hostile-names'",
        "bytearray(b'hostile-names')",
        "Name('')",
        "b''",
        "'other'",
    ],
)
def test_namespaces_accepted_as_optree_accepts_them(differential, namespace):
    exprs = [
        f'optree.tree_flatten(tree, namespace={namespace})',
        f'type(optree.tree_structure(tree, namespace={namespace}).namespace)',
        f'optree.tree_leaves(tree, namespace={namespace})',
        f'list(optree.tree_iter(tree, namespace={namespace}))',
        f'optree.tree_map(lambda x: x, tree, namespace={namespace})',
        f'optree.tree_flatten_with_path(tree, namespace={namespace})',
        f'optree.tree_is_leaf(tree, namespace={namespace})',
        f'optree.treespec_leaf(namespace={namespace})',
        f'optree.treespec_none(namespace={namespace})',
        f'optree.treespec_tuple((), namespace={namespace})',
        f'optree.treespec_from_collection(Node(optree.treespec_leaf()), namespace={namespace})',
        f'optree._C.is_dict_insertion_ordered({namespace})',
        # (not the size itself: the reference is a long-lived process that registered more)
        f'type(optree._C.get_registry_size({namespace}))',
    ]
    differential.check(NAMESPACE_SETUP, exprs, isolated=True)


def test_str_subclass_namespaces_register_and_unregister(differential):
    exprs = [
        "optree.register_pytree_node.get(Node, namespace=Name('hostile-names'))",
        "optree.unregister_pytree_node(Node, namespace=Name('hostile-names'))",
        "with optree.dict_insertion_ordered(True, namespace=Name('hostile-names')):\n"
        "    result = optree.tree_leaves({'b': 1, 'a': 2}, namespace='hostile-names')\n",
        "@optree.register_pytree_node_class(namespace=Name('hostile-class'))\n"
        'class Leafy:\n'
        '    def __tree_flatten__(self):\n'
        '        return (), None\n'
        '    @classmethod\n'
        '    def __tree_unflatten__(cls, meta, children):\n'
        '        return cls()\n'
        "result = optree.tree_structure(Leafy(), namespace='hostile-class')\n",
    ]
    differential.check(NAMESPACE_SETUP, exprs, isolated=True)


@pytest.mark.parametrize(
    'namespace', ['1', 'None', "['ns']", "'\\udc80'", 'object()', "memoryview(b'ns')"]
)
def test_namespaces_rejected_with_type_error(differential, namespace):
    exprs = [
        f'optree.tree_flatten(tree, namespace={namespace})',
        f'optree.tree_leaves(tree, namespace={namespace})',
        f'optree.tree_structure(tree, namespace={namespace})',
        f'optree.tree_iter(tree, namespace={namespace})',
        f'optree.tree_map(lambda x: x, tree, namespace={namespace})',
        f'optree.tree_is_leaf(tree, namespace={namespace})',
        f'optree.treespec_leaf(namespace={namespace})',
        f'optree.treespec_none(namespace={namespace})',
        f'optree.treespec_list((), namespace={namespace})',
        f'optree._C.is_dict_insertion_ordered({namespace})',
        f'optree._C.set_dict_insertion_ordered(True, {namespace})',
        f'optree.tree_flatten_one_level([1], namespace={namespace})',
        f'optree.register_pytree_node.get(list, namespace={namespace})',
    ]
    for expr in exprs:
        differential.check_raises(NAMESPACE_SETUP, expr, TypeError)


FLAG_CALLS = [
    'optree.tree_flatten(tree, none_is_leaf={v})',
    'optree.tree_leaves(tree, none_is_leaf={v})',
    'optree.tree_structure(tree, none_is_leaf={v})',
    'list(optree.tree_iter(tree, none_is_leaf={v}))',
    'optree.tree_map(lambda x: x, tree, none_is_leaf={v})',
    'optree.tree_flatten_with_path(tree, none_is_leaf={v})',
    'optree.tree_is_leaf(None, none_is_leaf={v})',
    'optree.treespec_leaf(none_is_leaf={v})',
    'optree.treespec_none(none_is_leaf={v})',
    'optree.treespec_tuple((), none_is_leaf={v})',
    'optree.tree_structure(1).is_leaf(strict={v})',
    'optree.tree_structure([1]).is_prefix(optree.tree_structure([1]), strict={v})',
    'optree.tree_structure([1]).is_suffix(optree.tree_structure([1]), strict={v})',
    "optree._C.is_dict_insertion_ordered('hostile-flags-unset', {v})",
    # The reference runs in a long-lived process: the mode is put back.
    "optree._C.set_dict_insertion_ordered({v}, 'hostile-flags')\n"
    "result = optree._C.is_dict_insertion_ordered('hostile-flags')\n"
    "optree._C.set_dict_insertion_ordered(False, 'hostile-flags')\n",
]

FLAG_SETUP = textwrap.dedent(
    """
    class Truthy:
        def __bool__(self):
            return True


    class Sized:
        def __len__(self):
            return 1


    class Broken:
        def __bool__(self):
            raise RuntimeError('no truth')


    tree = {'a': None, 'b': (1, None)}
    """,
)


@pytest.mark.parametrize(
    'value', ['True', 'False', 'None', '0', '1', '-1', '2.5', '0.0', '1j', '10**30', 'Truthy()']
)
def test_flags_accept_what_optree_accepts(differential, value):
    exprs = [call.format(v=value) for call in FLAG_CALLS]
    differential.check(FLAG_SETUP, exprs, isolated=True)


@pytest.mark.parametrize(
    'value', ["'yes'", "''", '[]', '[1]', 'object()', 'Sized()', 'Broken()', "b'1'"]
)
def test_flags_reject_what_optree_rejects(differential, value):
    for call in FLAG_CALLS:
        differential.check_raises(FLAG_SETUP, call.format(v=value), TypeError)


# ---------------------------------------------------------------------------------------------
# Registering namedtuple and PyStructSequence classes: warnings and messages
# ---------------------------------------------------------------------------------------------

REGISTRATION_SETUP = textwrap.dedent(
    """
    import warnings

    from optree.registry import __GLOBAL_NAMESPACE as GLOBAL

    Pt = namedtuple('Pt', ['a', 'b'])


    def register(cls, namespace):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            try:
                optree.register_pytree_node(
                    cls,
                    lambda t: (list(t)[::-1], None),
                    lambda meta, children: cls(*children[::-1]),
                    namespace=namespace,
                )
                outcome = 'registered'
            except ValueError as ex:
                outcome = f'ValueError: {ex}'
        return outcome, [(w.category.__name__, str(w.message)) for w in caught]
    """,
)


def test_registering_a_namedtuple_warns_once_it_stands(differential):
    exprs = [
        'result = [register(Pt, GLOBAL), register(Pt, GLOBAL), optree.tree_leaves(Pt(1, 2))]\n'
        'optree.unregister_pytree_node(Pt, namespace=GLOBAL)\n',
        "result = [register(Pt, 'hostile-nt'), register(Pt, 'hostile-nt'),\n"
        "          optree.tree_leaves(Pt(1, 2), namespace='hostile-nt')]\n",
        "result = register(time.struct_time, 'hostile-ss')\n",
        'result = register(type(sys.float_info), GLOBAL)\n'
        'optree.unregister_pytree_node(type(sys.float_info), namespace=GLOBAL)\n',
        # A plain class registers silently.
        "class Plain:\n    pass\nresult = register(Plain, 'hostile-nt')\n",
    ]
    differential.check(REGISTRATION_SETUP, exprs, isolated=True)


def test_a_registration_warning_raised_as_an_error_undoes_the_registration(differential):
    expr = textwrap.dedent(
        """
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            try:
                optree.register_pytree_node(
                    Pt, lambda t: (t, None), lambda m, c: Pt(*c), namespace='hostile-err'
                )
            except UserWarning as ex:
                raised = str(ex)
        result = (
            raised,
            optree.tree_structure(Pt(1, 2), namespace='hostile-err'),
            register(Pt, 'hostile-err'),
            optree.tree_structure(Pt(1, 2), namespace='hostile-err'),
        )
        """,
    )
    differential.check(REGISTRATION_SETUP, [expr], isolated=True)


def test_unregistering_a_namedtuple_that_was_not_registered(differential):
    exprs = [
        "optree.unregister_pytree_node(Pt, namespace='hostile-none')",
        'optree.unregister_pytree_node(Pt, namespace=GLOBAL)',
        "optree.unregister_pytree_node(time.struct_time, namespace='hostile-none')",
        'optree.unregister_pytree_node(type(sys.float_info), namespace=GLOBAL)',
    ]
    for expr in exprs:
        differential.check_raises(REGISTRATION_SETUP, expr, ValueError, check_message=True)


# ---------------------------------------------------------------------------------------------
# The classification of namedtuple and PyStructSequence classes holds no reference
# ---------------------------------------------------------------------------------------------

CLASSIFIERS = [
    'optree.is_namedtuple',
    'optree.is_namedtuple_class',
    'optree.is_structseq',
    'optree.is_structseq_class',
    'optree.namedtuple_fields',
    'optree.structseq_fields',
]


@pytest.mark.parametrize('classifier', CLASSIFIERS)
def test_classifying_a_class_keeps_no_reference_to_it(classifier):
    setup = textwrap.dedent(
        f"""
        import gc
        import sysconfig
        import weakref

        deleted = []


        class Meta(type):
            def __del__(cls):
                deleted.append(cls.__name__)


        class Foo(metaclass=Meta):
            pass


        def probe(cls):
            before = sys.getrefcount(cls)
            for _ in range(3):
                try:
                    {classifier}(cls)
                except TypeError:
                    pass
            return sys.getrefcount(cls) - before
        """,
    )
    expr = textwrap.dedent(
        """
        Point = namedtuple('Point', ('x', 'y'))
        changes = [probe(Point), probe(Foo), probe(time.struct_time)]
        point_ref = weakref.ref(Point)
        del Point, Foo
        gc.collect()
        # Free-threaded builds may keep types alive longer (optree's suite does not check it).
        collected = bool(sysconfig.get_config_var('Py_GIL_DISABLED')) or (
            point_ref() is None and deleted == ['Foo']
        )
        result = (changes, collected)
        """,
    )
    _assert_ours_completes(setup, expr, '([0, 0, 0], True)')


def test_namedtuple_fields_is_the_classes_own_fields(differential):
    setup = "P = namedtuple('P', ('x', 'y'))\nold = P._fields\n"
    differential.check(
        setup,
        [
            'optree.namedtuple_fields(P) is old',
            'optree.namedtuple_fields(P(0, 1)) is old',
            "new = ('a', 'b')\nP._fields = new\n"
            'result = (optree.namedtuple_fields(P) is new, optree.namedtuple_fields(P(0, 1)))\n',
        ],
        isolated=True,
    )


# ---------------------------------------------------------------------------------------------
# An import that fails part way, then a second import
# ---------------------------------------------------------------------------------------------


def test_import_after_a_failed_import_works():
    # With atexit.register broken optree's import fails on interpreters where it registers its
    # exit hook that way (before 3.13) and succeeds elsewhere; either way, once it is restored
    # optree imports and works, and the failed module, when collected, leaves it alone.
    script = textwrap.dedent(
        """
        import atexit
        import gc
        import sys
        import time

        real_register = atexit.register


        def failing_register(*args, **kwargs):
            raise RuntimeError('injected atexit failure')


        atexit.register = failing_register
        try:
            import optree
        except RuntimeError:
            assert 'optree' not in sys.modules and 'optree._C' not in sys.modules
        finally:
            atexit.register = real_register

        import optree

        gc.collect()
        assert optree.tree_leaves({'b': (1, [2]), 'a': 3}) == [3, 1, 2]
        assert optree.structseq_fields(time.struct_time)[:2] == ('tm_year', 'tm_mon')
        optree.register_pytree_node(
            type('Box', (), {}), lambda b: ((), None), lambda m, c: None, namespace='boxes'
        )
        print('COMPLETED')
        """,
    )
    proc = subprocess.run(
        [sys.executable, '-c', script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tempfile.gettempdir(),  # not the work tree, whose optree/ has no compiled core
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == 'COMPLETED'
