"""Malformed pickle states, truncated and corrupted pickles, uninitialized treespecs: a clear
exception, never a crash, never a change to a live treespec.

Our side runs in a child process, and most cases check our optree only: optree 0.20.0 itself
crashes on some of them.
"""

from __future__ import annotations

import textwrap

import pytest

from harness.differential import run_ours_isolated
from harness.snippets import registered_node

CUSTOM_NODE = registered_node('bad-input')


# ---------------------------------------------------------------------------------------------
# Malformed pickle state
# ---------------------------------------------------------------------------------------------

# Run in a child process with *our* optree only: the reference itself crashes on some of these.
PICKLE_FUZZ = textwrap.dedent(
    """
    REPLACEMENTS = [None, -1, 0, 1, 2**31, 2**64 + 1, 'x', (), [], 1.5, {}]
    ACCEPTABLE = (ValueError, TypeError)


    def mutations(obj, path=()):
        for r in REPLACEMENTS:
            if type(r) is not type(obj) or r != obj:
                yield path + ('=' + repr(r),), r
        if isinstance(obj, (tuple, list)):
            for i, x in enumerate(obj):
                for p, m in mutations(x, path + (i,)):
                    items = list(obj)
                    items[i] = m
                    yield p, type(obj)(items)
            if obj:
                yield path + ('drop-last',), type(obj)(list(obj)[:-1])
            yield path + ('append',), type(obj)(list(obj) + [None])
        elif isinstance(obj, dict):
            for k, v in obj.items():
                for p, m in mutations(v, path + (k,)):
                    d = dict(obj)
                    d[k] = m
                    yield p, d


    def rebuild(func, args, state):
        obj = func(*args)
        if state is None:  # pickle skips BUILD: an uninitialized treespec, which raises on use
            try:
                repr(obj)
            except ValueError as ex:
                assert 'not initialized' in str(ex), ex
                raise
        else:
            setstate = getattr(obj, '__setstate__', None)
            if setstate is not None:
                setstate(state)
            else:
                obj.__dict__.update(state)
        return obj


    def fuzz(spec, protocol=2):
        rv = spec.__reduce_ex__(protocol)
        func, args = rv[0], rv[1]
        state = rv[2] if len(rv) > 2 else None
        bad = []
        counts = collections.Counter()
        targets = [('args', args)] + ([('state', state)] if state is not None else [])
        for which, target in targets:
            for path, mutated in mutations(target):
                sys.stderr.write(f'{which} {path!r}\\n')
                sys.stderr.flush()
                a, s = (mutated, state) if which == 'args' else (args, mutated)
                try:
                    obj = rebuild(func, a, s)
                except ACCEPTABLE as ex:
                    counts[type(ex).__name__] += 1
                    continue
                except RuntimeError as ex:
                    if type(ex) is RuntimeError:  # what optree 0.20 raises for malformed states
                        counts['RuntimeError'] += 1
                        continue
                    bad.append((which, path, f'{type(ex).__name__}: {ex}'))
                    continue
                except Exception as ex:
                    bad.append((which, path, f'{type(ex).__name__}: {ex}'))
                    continue
                if not isinstance(obj, optree.PyTreeSpec):
                    counts['not-a-spec'] += 1
                    continue
                # An accepted state must describe a usable, self-consistent treespec: its
                # leaf count agrees with the object it rebuilds.
                try:
                    repr(obj)
                    hash(obj)
                    assert obj == obj
                    rebuilt = obj.unflatten(list(range(obj.num_leaves)))
                    count = len(
                        optree.tree_leaves(
                            rebuilt, none_is_leaf=obj.none_is_leaf, namespace=obj.namespace
                        )
                    )
                    if count != obj.num_leaves:
                        bad.append(
                            (which, path, f'accepted, {obj!r} rebuilds {rebuilt!r}: {count} leaves')
                        )
                    else:
                        counts['accepted'] += 1
                except Exception as ex:
                    bad.append((which, path, f'accepted but unusable: {type(ex).__name__}: {ex}'))
        return bad, dict(counts)
    """,
)

PICKLE_FUZZ_TREES = {
    'dict-list-deque': "{'a': [1, (2, None)], 'b': deque([3], maxlen=4)}",
    'namedtuple-ordereddict': 'Point(1, OrderedDict(z=2, a=None))',
    'defaultdict-structseq': 'defaultdict(list, {1: os.terminal_size((2, 3))})',
    'none-is-leaf': "optree.tree_structure([None, {'k': None}], none_is_leaf=True)",
    'custom': 'CUSTOM',
    'leaf': '1',
}


@pytest.mark.parametrize('case', list(PICKLE_FUZZ_TREES))
def test_malformed_pickle_state_never_crashes(case):
    tree = PICKLE_FUZZ_TREES[case]
    setup = PICKLE_FUZZ + CUSTOM_NODE
    if tree == 'CUSTOM':
        spec_expr = "optree.tree_structure([Node(1, (2,)), Node()], namespace='bad-input')"
    elif tree.startswith('optree.'):
        spec_expr = tree
    else:
        spec_expr = f'optree.tree_structure({tree})'
    (outcome,) = run_ours_isolated([(setup, f'fuzz({spec_expr})')])
    assert outcome['ok'], f'the fuzz harness itself failed: {outcome}'
    bad, counts = eval(outcome['repr'])
    assert not bad, f'{len(bad)} malformed states were mishandled (counts {counts}):\n' + '\n'.join(
        map(str, bad[:25]),
    )


# Rebuild a treespec from a (possibly garbage) state through whichever protocol our
# PyTreeSpec pickles with: ``(func, args, state)`` -> ``func(*args).__setstate__(state)``, or
# ``(func, (..., state))`` -> ``func(..., garbage)``.
LOAD_WITH_STATE = """
spec = optree.tree_structure({'a': [1, 2]})
rv = spec.__reduce_ex__(2)
func, args = rv[0], rv[1]
has_state = len(rv) > 2 and rv[2] is not None


def load(garbage):
    if has_state:
        obj = func(*args)
        obj.__setstate__(garbage)
        return obj
    return func(*args[:-1], garbage)
"""

GARBAGE_STATES = [
    'None',
    '()',
    "'x'",
    '42',
    '[]',
    '{}',
    '(None, None, None)',
    '((), False, "")',
    '(((),), False, "")',
    '(((1, 0, None, None, None, 1, 1, None),), "no", "")',
    '(((1, 0, None, None, None, 1, 1, None),), False, 7)',
    '(((99, 0, None, None, None, 1, 1, None),), False, "")',
    '(((4, 5, None, None, None, 1, 1, None),), False, "")',
    '(((1, 0, None, None, None, 1, 1, None), (1, 0, None, None, None, 1, 1, None)), False, "")',
]


def test_load_garbage_state_raises():
    """Garbage pickle states raise a clean exception on load, never crash, never load."""
    exprs = []
    for garbage in GARBAGE_STATES:
        exprs.append(
            'try:\n'
            f'    obj = load({garbage})\n'
            'except (ValueError, TypeError, RuntimeError) as ex:\n'
            '    result = type(ex).__name__\n'
            'else:\n'
            "    result = ('accepted', repr(obj))\n",
        )
    outcomes = run_ours_isolated([(LOAD_WITH_STATE, expr) for expr in exprs])
    for garbage, outcome in zip(GARBAGE_STATES, outcomes, strict=True):
        assert outcome['ok'], f'state {garbage}: unexpected exception {outcome}'
        assert outcome['repr'] in {"'ValueError'", "'TypeError'", "'RuntimeError'"}, (
            f'state {garbage}: malformed state accepted: {outcome["repr"]}'
        )


def test_setstate_on_live_spec_does_not_mutate_it():
    """A PyTreeSpec is immutable: __setstate__ on a live one raises or changes nothing."""
    setup = (
        "spec = optree.tree_structure({'a': [1, 2]})\n"
        'before = (repr(spec), hash(spec), spec.num_leaves)\n'
        'rv = optree.tree_structure((1, 2, 3)).__reduce_ex__(2)\n'
        'other_state = rv[2] if len(rv) > 2 and rv[2] is not None else rv[1][-1]\n'
    )
    expr = (
        'try:\n'
        '    spec.__setstate__(other_state)\n'
        'except Exception as ex:\n'
        '    pass\n'
        'result = (repr(spec), hash(spec), spec.num_leaves) == before and spec.unflatten([1, 2]) '
        '== {"a": [1, 2]}\n'
    )
    (outcome,) = run_ours_isolated([(setup, expr)])
    assert outcome['ok'] and outcome['repr'] == 'True', outcome


def test_uninitialized_treespec_never_crashes():
    """``PyTreeSpec.__new__(PyTreeSpec)`` fails, or its methods raise or work: never crash.

    (optree 0.20 segfaults on ``repr`` of such an object: ours must not.)
    """
    exprs = [
        "sys.stderr.write('PyTreeSpec()\\n')\n"
        'sys.stderr.flush()\n'
        'result = type(PyTreeSpec()).__name__\n',
        "sys.stderr.write('PyTreeSpec.__new__(PyTreeSpec)\\n')\n"
        'sys.stderr.flush()\n'
        'result = type(PyTreeSpec.__new__(PyTreeSpec)).__name__\n',
    ]
    uses = [
        'repr(s)',
        's.num_leaves',
        's.num_nodes',
        'hash(s)',
        's == s',
        's.unflatten([])',
        's.children()',
        'pickle.dumps(s)',
        's.paths()',
        's.is_leaf()',
        'len(s)',
        's.compose(s)',
        'copy.deepcopy(s)',
    ]
    for use in uses:
        exprs.append(
            f'sys.stderr.write({use!r} + "\\n")\n'
            'sys.stderr.flush()\n'
            'try:\n'
            '    s = PyTreeSpec.__new__(PyTreeSpec)\n'
            'except TypeError:\n'
            "    result = 'cannot create'\n"
            'else:\n'
            '    try:\n'
            f'        {use}\n'
            '    except (TypeError, ValueError, RuntimeError):\n'
            "        result = 'raised'\n"
            '    else:\n'
            "        result = 'worked'\n",
        )
    outcomes = run_ours_isolated([('', expr) for expr in exprs])
    assert not outcomes[0]['ok'] and outcomes[0]['exc_type'] == 'TypeError', outcomes[0]
    for expr, outcome in zip(exprs[2:], outcomes[2:], strict=True):
        assert outcome['ok'], f'{expr}: {outcome}'


def test_truncated_and_corrupted_pickles_never_crash():
    setup = CUSTOM_NODE + textwrap.dedent(
        """
        spec = optree.tree_structure(
            {'a': [1, (2, None)], 'b': Point(deque([3], maxlen=4), Node(5))}, namespace='bad-input'
        )
        data = pickle.dumps(spec, protocol=pickle.HIGHEST_PROTOCOL)


        def attempt(blob):
            try:
                obj = pickle.loads(blob)
            except Exception as ex:
                return 'raised'
            try:
                repr(obj)
                if isinstance(obj, optree.PyTreeSpec):
                    obj.unflatten(range(obj.num_leaves))
            except Exception:
                return 'raised-later'
            return 'loaded'
        """,
    )
    exprs = [
        'collections.Counter(attempt(data[:i]) for i in range(len(data)))',
        'collections.Counter(attempt(data[:i] + bytes([(data[i] + 1) % 256]) + data[i + 1:]) for i '
        'in range(len(data)))',
        'collections.Counter(attempt(data[:i] + bytes([0]) + data[i + 1:]) for i in '
        'range(len(data)))',
    ]
    outcomes = run_ours_isolated([(setup, expr) for expr in exprs])
    for expr, outcome in zip(exprs, outcomes, strict=True):
        assert outcome['ok'], f'{expr}: {outcome}'


def test_unpickling_unregistered_custom_type(differential, namespace):
    setup = textwrap.dedent(
        f"""
        NS = {namespace!r}


        class A:
            def __init__(self, *c):
                self.c = c


        optree.register_pytree_node(A, lambda a: (a.c, None), lambda m, c: A(*c), namespace=NS)
        data = pickle.dumps(optree.tree_structure([A(1, 2)], namespace=NS))
        optree.unregister_pytree_node(A, namespace=NS)
        """,
    )
    differential.check(setup, ['pickle.loads(data)'])
