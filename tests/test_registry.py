"""The registry: registration and unregistration errors and outcomes (against optree 0.20.0),
the registry / interpreter introspection functions of ``optree._C`` (our optree only, plus a few
differential checks of values that must agree with optree 0.20.0), and a dict_insertion_ordered
context never exited.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import optree
from optree import _C

from harness.differential import assert_all_raise


def _flatten(node):
    return (node.value,), None


def _unflatten(metadata, children):
    return Leafy(*children)


class Leafy:
    def __init__(self, value):
        self.value = value


def make_class(name='Fresh'):
    return type(name, (), {'__init__': Leafy.__init__})


@pytest.fixture
def registered(namespace):
    """Register a fresh class in ``namespace``; unregister it in teardown if still registered."""
    cls = make_class()
    done = []

    def register(ns=namespace, klass=cls):
        optree.register_pytree_node(klass, _flatten, _unflatten, namespace=ns)
        done.append((klass, ns))
        return klass

    yield register
    for klass, ns in done:
        try:
            optree.unregister_pytree_node(klass, namespace=ns)
        except ValueError:
            pass


# ---------------------------------------------------------------------------------------------
# Interpreters
# ---------------------------------------------------------------------------------------------


def test_current_interpreter_is_main():
    assert _C.is_current_interpreter_main() is True
    current = _C.get_current_interpreter_id()
    main = _C.get_main_interpreter_id()
    assert type(current) is int
    assert type(main) is int
    assert current == main
    assert current >= 0


def test_alive_interpreter_ids_contain_current():
    alive = _C.get_alive_interpreter_ids()
    assert isinstance(alive, set)
    assert all(type(i) is int for i in alive)
    assert _C.get_current_interpreter_id() in alive
    assert _C.get_main_interpreter_id() in alive


def test_interpreter_counts_are_consistent():
    alive = _C.get_num_interpreters_alive()
    seen = _C.get_num_interpreters_seen()
    assert type(alive) is int
    assert type(seen) is int
    assert alive >= 1
    assert seen >= alive
    assert alive == len(_C.get_alive_interpreter_ids())


def test_interpreter_queries_are_stable():
    first = (
        _C.get_current_interpreter_id(),
        _C.get_main_interpreter_id(),
        _C.get_num_interpreters_alive(),
        _C.get_alive_interpreter_ids(),
    )
    # Flattening and registering must not change what the interpreter queries report.
    optree.tree_flatten({'a': [1, (2, None)]})
    second = (
        _C.get_current_interpreter_id(),
        _C.get_main_interpreter_id(),
        _C.get_num_interpreters_alive(),
        _C.get_alive_interpreter_ids(),
    )
    assert first == second


def test_alive_ids_is_a_fresh_set():
    ids = _C.get_alive_interpreter_ids()
    ids.add(-12345)
    assert -12345 not in _C.get_alive_interpreter_ids()


def test_interpreter_functions_match_reference_in_main_interpreter(differential):
    differential.check(
        '',
        [
            'optree._C.is_current_interpreter_main()',
            'optree._C.get_current_interpreter_id() == optree._C.get_main_interpreter_id()',
            'optree._C.get_current_interpreter_id() in optree._C.get_alive_interpreter_ids()',
            'type(optree._C.get_alive_interpreter_ids())',
            'optree._C.get_num_interpreters_alive() == len(optree._C.get_alive_interpreter_ids())',
            'optree._C.get_num_interpreters_seen() >= optree._C.get_num_interpreters_alive()',
        ],
    )


# ---------------------------------------------------------------------------------------------
# Registry size
# ---------------------------------------------------------------------------------------------


def test_registry_size_defaults():
    assert type(_C.get_registry_size()) is int
    assert _C.get_registry_size() == _C.get_registry_size(None)
    assert _C.get_registry_size() >= 8  # the builtin node types at least


def test_registry_size_of_unused_namespace_counts_builtins_only(differential):
    differential.check(
        '',
        [
            "optree._C.get_registry_size('never-used-namespace-for-tests')",
            "optree._C.get_registry_size('')",
            'optree._C.get_registry_size(1)',
        ],
    )


def test_registry_size_grows_and_shrinks(namespace, registered):
    other = namespace + '-other'
    total, in_ns, in_other = (
        _C.get_registry_size(),
        _C.get_registry_size(namespace),
        _C.get_registry_size(other),
    )
    cls = registered()
    assert _C.get_registry_size(namespace) == in_ns + 1
    assert _C.get_registry_size() == total + 1
    assert _C.get_registry_size(other) == in_other
    second = registered(klass=make_class('Second'))
    assert _C.get_registry_size(namespace) == in_ns + 2
    assert _C.get_registry_size() == total + 2
    optree.unregister_pytree_node(cls, namespace=namespace)
    assert _C.get_registry_size(namespace) == in_ns + 1
    assert _C.get_registry_size() == total + 1
    optree.unregister_pytree_node(second, namespace=namespace)
    assert _C.get_registry_size(namespace) == in_ns
    assert _C.get_registry_size() == total


def test_namespaces_are_counted_separately(namespace, registered):
    ns1, ns2 = namespace + '-1', namespace + '-2'
    total = _C.get_registry_size()
    base1, base2 = _C.get_registry_size(ns1), _C.get_registry_size(ns2)
    assert base1 == base2  # both unused: the builtins only
    cls = make_class()
    registered(ns=ns1, klass=cls)
    assert (_C.get_registry_size(ns1), _C.get_registry_size(ns2)) == (base1 + 1, base2)
    registered(ns=ns2, klass=cls)  # the same class in a second namespace is a second entry
    assert (_C.get_registry_size(ns1), _C.get_registry_size(ns2)) == (base1 + 1, base2 + 1)
    assert _C.get_registry_size() == total + 2
    optree.unregister_pytree_node(cls, namespace=ns1)
    assert (_C.get_registry_size(ns1), _C.get_registry_size(ns2)) == (base1, base2 + 1)
    assert _C.get_registry_size() == total + 1
    # The class is still a node in ns2 and a leaf in ns1.
    assert optree.tree_leaves(cls(5), namespace=ns2) == [5]
    leaf = cls(6)
    assert optree.tree_leaves(leaf, namespace=ns1) == [leaf]


def test_failed_registrations_do_not_change_size(namespace, registered):
    cls = registered()
    total, in_ns = _C.get_registry_size(), _C.get_registry_size(namespace)
    with pytest.raises(ValueError):
        optree.register_pytree_node(cls, _flatten, _unflatten, namespace=namespace)
    with pytest.raises(ValueError):
        optree.register_pytree_node(list, _flatten, _unflatten, namespace=namespace)
    with pytest.raises(ValueError):
        optree.unregister_pytree_node(make_class(), namespace=namespace)
    with pytest.raises(ValueError):
        optree.unregister_pytree_node(dict, namespace=namespace)
    with pytest.raises(TypeError):
        optree.register_pytree_node(cls, _flatten, _unflatten, namespace=42)
    assert (_C.get_registry_size(), _C.get_registry_size(namespace)) == (total, in_ns)


def test_register_pytree_node_class_counts(namespace):
    before = _C.get_registry_size(namespace)

    @optree.register_pytree_node_class(namespace=namespace)
    class Pairish:
        def __init__(self, a, b):
            self.a, self.b = a, b

        def tree_flatten(self):
            return (self.a, self.b), None

        @classmethod
        def tree_unflatten(cls, metadata, children):
            return cls(*children)

    try:
        assert _C.get_registry_size(namespace) == before + 1
        assert optree.tree_leaves(Pairish(1, [2]), namespace=namespace) == [1, 2]
    finally:
        optree.unregister_pytree_node(Pairish, namespace=namespace)
    assert _C.get_registry_size(namespace) == before


def test_dict_insertion_ordered_does_not_register_types(namespace):
    total, in_ns = _C.get_registry_size(), _C.get_registry_size(namespace)
    with optree.dict_insertion_ordered(True, namespace=namespace):
        assert (_C.get_registry_size(), _C.get_registry_size(namespace)) == (total, in_ns)
        assert optree.tree_leaves({'b': 1, 'a': 2}, namespace=namespace) == [1, 2]
    assert optree.tree_leaves({'b': 1, 'a': 2}, namespace=namespace) == [2, 1]
    assert (_C.get_registry_size(), _C.get_registry_size(namespace)) == (total, in_ns)


def test_registry_size_deltas_match_reference(differential, namespace):
    setup = (
        f'NS = {namespace!r}\n'
        'class A:\n    pass\n'
        'class B:\n    pass\n'
        'size = lambda: (optree._C.get_registry_size(NS), optree._C.get_registry_size(NS + "-x"))\n'
        'start = size()\n'
        'delta = lambda: tuple(b - a for a, b in zip(start, size()))\n'
        'reg = lambda cls, ns: optree.register_pytree_node(cls, lambda x: ((), None), lambda m, c: '
        'cls(), namespace=ns)\n'
    )
    differential.check(
        setup,
        [
            'reg(A, NS)\nresult = delta()\n',
            'reg(A, NS)\nreg(B, NS)\nreg(A, NS + "-x")\nresult = delta()\n',
            'reg(A, NS)\noptree.unregister_pytree_node(A, namespace=NS)\nresult = delta()\n',
            'try:\n    reg(list, NS)\nexcept ValueError:\n    pass\nresult = delta()\n',
        ],
    )


# ---------------------------------------------------------------------------------------------
# Registration errors
# ---------------------------------------------------------------------------------------------

_REG = 'optree.register_pytree_node({cls}, lambda x: ((), None), lambda m, c: None, namespace={ns})'


BUILTIN_NODE_TYPES = {
    'list': 'list',
    'tuple': 'tuple',
    'dict': 'dict',
    'type(None)': 'NoneType',
    'OrderedDict': 'OrderedDict',
    'defaultdict': 'defaultdict',
    'deque': 'deque',
}


@pytest.mark.parametrize('cls', list(BUILTIN_NODE_TYPES))
def test_registering_builtin_type_raises(differential, cls):
    pairs = assert_all_raise(
        differential,
        '',
        [
            _REG.format(cls=cls, ns="'reg-builtin'"),
            f'optree.unregister_pytree_node({cls}, namespace="reg-builtin")',
        ],
        ValueError,
        isolated=False,
        check_message=False,
    )
    for ours, _ in pairs:
        assert BUILTIN_NODE_TYPES[cls] in ours['message'], ours


def test_registration_outcomes_for_other_types(differential):
    differential.check(
        'import collections\n',
        [
            _REG.format(cls='int', ns="'reg-other'"),
            _REG.format(cls='time.struct_time', ns="'reg-other'"),
            _REG.format(cls="namedtuple('P', 'x')", ns="'reg-other'"),
            _REG.format(cls='type("Sub", (list,), {})', ns="'reg-other'"),
        ],
    )


def test_registering_twice_in_same_namespace_raises(differential, namespace):
    setup = f'class A:\n    pass\n\nNS = {namespace!r}\n' + _REG.format(cls='A', ns='NS') + '\n'
    assert_all_raise(
        differential, setup, [_REG.format(cls='A', ns='NS')], ValueError, isolated=False
    )
    # ... but another namespace is fine, and the first registration still works.
    differential.check(
        setup,
        [
            _REG.format(cls='A', ns='NS + "-other"'),
            'optree.tree_structure([A()], namespace=NS)',
            "optree.tree_structure([A()], namespace='unrelated')",
        ],
    )


def test_register_pytree_node_class_twice_raises(differential, namespace):
    setup = textwrap.dedent(
        f"""
        NS = {namespace!r}


        class C:
            def tree_flatten(self):
                return (), None

            @classmethod
            def tree_unflatten(cls, metadata, children):
                return cls()


        optree.register_pytree_node_class(C, namespace=NS)
        """,
    )
    assert_all_raise(
        differential,
        setup,
        ['optree.register_pytree_node_class(C, namespace=NS)'],
        ValueError,
        isolated=False,
    )


def test_unregistering_unregistered_type_raises(differential, namespace):
    setup = f'class A:\n    pass\n\nNS = {namespace!r}\n'
    assert_all_raise(
        differential,
        setup,
        [
            'optree.unregister_pytree_node(A, namespace=NS)',
            _REG.format(cls='A', ns='NS') + '\n'
            'optree.unregister_pytree_node(A, namespace=NS)\n'
            'optree.unregister_pytree_node(A, namespace=NS)\n',
            _REG.format(cls='A', ns='NS') + '\n'
            "optree.unregister_pytree_node(A, namespace=NS + '-elsewhere')\n",
        ],
        ValueError,
        isolated=False,
    )


def test_registration_argument_errors(differential):
    setup = 'class A:\n    pass\n'
    assert_all_raise(
        differential,
        setup,
        [_REG.format(cls='A', ns="''"), "optree.unregister_pytree_node(A, namespace='')"],
        ValueError,
        isolated=False,
    )
    assert_all_raise(
        differential,
        setup,
        [
            _REG.format(cls='A', ns='1'),
            _REG.format(cls='A()', ns="'reg-args'"),
            "optree.unregister_pytree_node(A(), namespace='reg-args')",
            'optree.unregister_pytree_node(A, namespace=None)',
            'optree.register_pytree_node(A, lambda x: ((), None), lambda m, c: A(), '
            "path_entry_type=int, namespace='x')",
        ],
        TypeError,
        isolated=False,
    )


def test_register_then_unregister_round_trip(differential, namespace):
    setup = textwrap.dedent(
        f"""
        NS = {namespace!r}


        class A:
            def __init__(self, x):
                self.x = x

            def __repr__(self):
                return f'A({{self.x!r}})'


        optree.register_pytree_node(A, lambda a: ((a.x,), None), lambda m, c: A(*c), namespace=NS)
        tree = [A(1), A([2, 3])]
        """,
    )
    differential.check(
        setup,
        [
            'optree.tree_flatten(tree, namespace=NS)',
            'optree.unregister_pytree_node(A, namespace=NS).type',
            'optree.unregister_pytree_node(A, namespace=NS)\nresult = optree.tree_flatten(tree, '
            'namespace=NS)\n',
            'spec = optree.tree_structure(tree, namespace=NS)\n'
            'optree.unregister_pytree_node(A, namespace=NS)\n'
            'result = spec.unflatten([7, 8, 9])\n',
            'data = pickle.dumps(optree.tree_structure(tree, namespace=NS))\n'
            'optree.unregister_pytree_node(A, namespace=NS)\n'
            'result = pickle.loads(data)\n',
        ],
    )


# ---------------------------------------------------------------------------------------------
# dict_insertion_ordered
# ---------------------------------------------------------------------------------------------


def test_permanent_dict_insertion_ordered_exits_quietly(tmp_path):
    """A dict_insertion_ordered context that is never exited (torch enters one for good) is
    closed at interpreter exit, after the registry is gone: nothing may be printed."""
    code = textwrap.dedent(
        """
        import optree
        session = optree.dict_insertion_ordered(True, namespace='forever')
        session.__enter__()
        assert optree.tree_leaves({'b': 1, 'a': 2}, namespace='forever') == [1, 2]
        """,
    )
    proc = subprocess.run(
        [sys.executable, '-c', code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,  # not the repository root, whose optree/ has no compiled core
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == '', proc.stderr
