"""optree.parallel: tree_map on every backend against optree.tree_map, and pack / unpack.

Backends: the calling thread (``max_workers=1``), the default pools (``executor=None``: threads,
or subinterpreters on CPython 3.14+ with a GIL), an explicit ``ThreadPoolExecutor``, an explicit
``InterpreterPoolExecutor`` (3.14+) and a ``ProcessPoolExecutor``; ``dask.distributed`` runs in
``test_parallel_processes.py``'s child processes. Trees come from the zoo, written out as
importable modules (``parallel_support.write_zoo_modules``) so that workers find their classes.
"""

from __future__ import annotations

import collections
import enum
import gc
import json
import math
import multiprocessing
import pickle
import sys
import sysconfig
import threading
import types
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, NamedTuple

import pytest

import optree
import optree.parallel

from harness import parallel_support
from harness.parallel_support import LeafError, Node2, Unregistered
from harness.reference import describe
from harness.zoo import VARIANTS, ZOO

ZOO_IDS = [entry.id for entry in ZOO]
FREE_THREADED = bool(sysconfig.get_config_var('Py_GIL_DISABLED'))
HAS_INTERPRETER_POOL = sys.version_info >= (3, 14)
needs_interpreters = pytest.mark.skipif(
    not HAS_INTERPRETER_POOL,
    reason='concurrent.interpreters and InterpreterPoolExecutor are CPython 3.14+',
)


@pytest.fixture(scope='session', autouse=True)
def zoo_modules(tmp_path_factory: pytest.TempPathFactory):
    """The zoo as modules on sys.path; the default pools are recreated to see them."""
    directory = tmp_path_factory.mktemp('zoo_modules')
    parallel_support.write_zoo_modules(directory)
    sys.path.insert(0, str(directory))
    optree.parallel.shutdown()
    yield directory
    optree.parallel.shutdown()
    sys.path.remove(str(directory))


@pytest.fixture(scope='module')
def interpreter_pool():
    if not HAS_INTERPRETER_POOL:
        pytest.skip('InterpreterPoolExecutor is CPython 3.14+')
    from concurrent.futures import InterpreterPoolExecutor

    with InterpreterPoolExecutor(
        2, initializer=optree.parallel._prepare_worker, initargs=(list(sys.path),)
    ) as pool:
        yield pool


@pytest.fixture(scope='module')
def thread_pool():
    with ThreadPoolExecutor(3) as pool:
        yield pool


@pytest.fixture(scope='module')
def process_pool():
    # spawn: children start clean (no fork of a threaded process) and get this sys.path.
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context('spawn')) as pool:
        yield pool


BACKENDS = ['calling-thread', 'default', 'threads', 'interpreters', 'processes']


REMOTE = ('interpreters', 'processes')


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """tree_map keyword arguments that select a backend (small chunks: many of them)."""
    name = request.param
    if name == 'calling-thread':
        return {'max_workers': 1}
    if name == 'default':
        return {'max_workers': 2, 'chunksize': 3}
    if name == 'threads':
        return {'executor': request.getfixturevalue('thread_pool'), 'chunksize': 3}
    if name == 'interpreters':
        return {'executor': request.getfixturevalue('interpreter_pool'), 'chunksize': 7}
    return {'executor': request.getfixturevalue('process_pool'), 'chunksize': 20}


def same_tree(actual: Any, expected: Any, **kwargs: Any) -> None:
    assert describe(actual) == describe(expected)
    actual_leaves, actual_spec = optree.tree_flatten(actual, **kwargs)
    expected_leaves, expected_spec = optree.tree_flatten(expected, **kwargs)
    assert actual_spec == expected_spec
    assert [describe(leaf) for leaf in actual_leaves] == [
        describe(leaf) for leaf in expected_leaves
    ]


def raised(func: Any, /, *args: Any, **kwargs: Any) -> BaseException:
    try:
        func(*args, **kwargs)
    except Exception as ex:
        return ex
    raise AssertionError('did not raise')


# ------------------------------------------------------------------------ tree_map


def _pickles(items: list[Any]) -> bool:
    try:
        pickle.dumps(items)
    except Exception:
        return False
    return True


def check_zoo_map(backend: dict[str, Any], remote: bool, variant: str, num_trees: int) -> int:
    """Maps every zoo tree (with num_trees - 1 rests) on the backend against optree.tree_map.

    Leaves that pickle nowhere (``sys.float_info`` as a leaf) cannot reach a worker process or
    interpreter: there the pickling error is expected. Returns the number of such trees."""
    unpicklable = 0
    for entry_id in ZOO_IDS:
        tree, kwargs = parallel_support.zoo_tree(entry_id, variant)
        rests = [parallel_support.zoo_tree(entry_id, variant)[0] for _ in range(num_trees - 1)]
        expected = optree.tree_map(parallel_support.tag, tree, *rests, **kwargs)
        leaves = optree.tree_leaves(tree, **kwargs)
        if remote and not _pickles(leaves):
            unpicklable += 1
            ex = raised(
                optree.parallel.tree_map, parallel_support.tag, tree, *rests, **kwargs, **backend
            )
            assert 'optree.parallel: while pickling leaf' in ex.__notes__[-1]
            continue
        actual = optree.parallel.tree_map(parallel_support.tag, tree, *rests, **kwargs, **backend)
        same_tree(actual, expected, **kwargs)
    return unpicklable


@pytest.mark.parametrize('variant', list(VARIANTS))
def test_tree_map_equals_optree_tree_map_on_the_zoo(
    request: pytest.FixtureRequest, backend: dict[str, Any], variant: str
) -> None:
    remote = request.node.callspec.params['backend'] in REMOTE
    unpicklable = check_zoo_map(backend, remote, variant, 1)
    assert unpicklable == (1 if remote and variant == 'is_leaf-tuple' else 0)


@pytest.mark.parametrize('variant', ['default', 'none_is_leaf+namespace', 'is_leaf-tuple'])
def test_tree_map_with_rests_equals_optree_tree_map(
    request: pytest.FixtureRequest, backend: dict[str, Any], variant: str
) -> None:
    remote = request.node.callspec.params['backend'] in REMOTE
    check_zoo_map(backend, remote, variant, 3)


def test_tree_map_rests_whose_leaves_are_subtrees(backend: dict[str, Any]) -> None:
    tree = {'a': 1, 'b': [2, 3], 'c': None}
    rest = {'a': (10, [11]), 'b': [{'x': 12}, 13], 'c': None}
    expected = optree.tree_map(parallel_support.tag, tree, rest)
    assert optree.parallel.tree_map(parallel_support.tag, tree, rest, **backend) == expected


def test_tree_map_mismatched_rests_raise_as_optree_tree_map(backend: dict[str, Any]) -> None:
    for rest in ({'a': 1, 'b': [2]}, {'a': 1, 'c': [2, 3]}, [1, 2, 3], {'a': 1, 'b': (2, 3)}):
        tree = {'a': 1, 'b': [2, 3]}
        expected = raised(optree.tree_map, parallel_support.add, tree, rest)
        actual = raised(optree.parallel.tree_map, parallel_support.add, tree, rest, **backend)
        assert type(actual) is type(expected)
        assert str(actual) == str(expected)


def _negatives_tree() -> Any:
    # 54 leaves: 10 in 'a', 20 in 'b', 4 in 'c' (two negative), 20 in 'd'.
    return {
        'a': list(range(10)),
        'b': [(i, i) for i in range(10, 20)],
        'c': [5, -7, 6, -8],
        'd': list(range(20, 40)),
    }


@pytest.mark.parametrize(
    'func', [parallel_support.fail_on_negative, parallel_support.fail_on_negative_late]
)
def test_tree_map_raises_the_first_failing_leafs_exception(backend: dict[str, Any], func) -> None:
    tree = _negatives_tree()
    tree['b'][3] = (13, -1)
    tree['d'][15] = -2
    expected = raised(optree.tree_map, func, tree)
    actual = raised(optree.parallel.tree_map, func, tree, **backend)
    assert type(actual) is LeafError
    assert actual.args == expected.args == ('negative leaf -1', -1)
    notes = getattr(actual, '__notes__', [])
    assert (
        notes[-1]
        == "optree.parallel.tree_map: func raised at leaf 17 of the tree, path ('b', 3, 1)"
    )


def test_tree_map_func_raising_stop_iteration_as_optree_tree_map(backend: dict[str, Any]) -> None:
    # In optree.tree_map, unflatten reads the map on past a StopIteration out of func (the
    # leaf's result is skipped), and raises its ValueError for too few leaves when the leaves
    # run out, or when the next read gives none either.
    trees = (
        list(range(10)),
        [3],
        {'a': [1, 2], 'b': (3, 4)},
        list(range(3, 50)),
        [0, 3, 3, 1],
        [3, 1, 2],
        list(range(40)) + [3] * 30,
    )
    for tree in trees:
        expected = raised(optree.tree_map, parallel_support.stop_at_three, tree)
        actual = raised(optree.parallel.tree_map, parallel_support.stop_at_three, tree, **backend)
        assert (type(actual), str(actual)) == (type(expected), str(expected))


def test_tree_map_exception_paths_of_custom_nodes_and_rests(backend: dict[str, Any]) -> None:
    tree = Node2({'k': [1, 2]}, Node2(3, -4, label='inner'), label='outer')
    rest = Node2({'k': [0, 0]}, Node2(0, 1, label='inner'), label='outer')
    actual = raised(
        optree.parallel.tree_map,
        parallel_support.fail_on_negative,
        tree,
        namespace='support',
        **backend,
    )
    assert isinstance(actual, LeafError)
    assert actual.__notes__[-1].endswith("leaf 3 of the tree, path ('right', 'right')")
    result = optree.parallel.tree_map(
        parallel_support.add, tree, rest, namespace='support', **backend
    )
    assert result == optree.tree_map(parallel_support.add, tree, rest, namespace='support')


def test_tree_map_remote_exceptions_carry_the_worker_traceback(
    interpreter_pool: Any, process_pool: Any
) -> None:
    for pool in (interpreter_pool, process_pool):
        actual = raised(
            optree.parallel.tree_map, parallel_support.fail_on_negative, [1, -1], executor=pool
        )
        assert type(actual) is LeafError
        assert 'fail_on_negative' in str(actual.__cause__)
        assert 'Traceback' in str(actual.__cause__)


def test_tree_map_exception_that_does_not_unpickle(process_pool: Any) -> None:
    actual = raised(
        optree.parallel.tree_map, parallel_support.fail_unpicklably, [1, -1], executor=process_pool
    )
    assert type(actual) is RuntimeError
    assert str(actual) == 'harness.parallel_support.Unpicklable: -1/no'
    assert actual.__notes__[-1].endswith('at leaf 1 of the tree, path (1,)')


def test_tree_map_base_exceptions_propagate(thread_pool: Any) -> None:
    def interrupt(x: Any) -> Any:
        if x == 3:
            raise KeyboardInterrupt
        return x

    for kwargs in (
        {'max_workers': 1},
        {'max_workers': 2, 'chunksize': 2},
        {'executor': thread_pool},
    ):
        with pytest.raises(KeyboardInterrupt):
            optree.parallel.tree_map(interrupt, list(range(8)), **kwargs)


def test_tree_map_of_empty_and_single_leaf_trees(backend: dict[str, Any]) -> None:
    for tree in ((), [], {}, None, 5, [[], ()], {'a': None}):
        expected = optree.tree_map(parallel_support.tag, tree)
        assert optree.parallel.tree_map(parallel_support.tag, tree, **backend) == expected


def test_tree_map_of_a_large_tree(backend: dict[str, Any]) -> None:
    tree = {f'k{i}': [float(i), i, str(i), None, b'x' * (i % 700)] for i in range(400)}
    expected = optree.tree_map(parallel_support.tag, tree, none_is_leaf=True)
    kwargs = {k: v for k, v in backend.items() if k != 'chunksize'}
    actual = optree.parallel.tree_map(parallel_support.tag, tree, none_is_leaf=True, **kwargs)
    same_tree(actual, expected, none_is_leaf=True)


def test_tree_map_calls_func_once_per_leaf_in_threads(thread_pool: Any) -> None:
    seen = collections.Counter()
    lock = threading.Lock()

    def count(x: Any) -> Any:
        with lock:
            seen[x] += 1
        return x

    for kwargs in (
        {'max_workers': 2, 'chunksize': 1},
        {'executor': thread_pool},
        {'max_workers': 1},
    ):
        seen.clear()
        assert optree.parallel.tree_map(count, list(range(50)), **kwargs) == list(range(50))
        assert seen == collections.Counter(range(50))


def test_tree_map_argument_checks() -> None:
    for bad in (0, -1, 1.5, True, '2'):
        with pytest.raises(ValueError, match='max_workers must be a positive int'):
            optree.parallel.tree_map(abs, [1], max_workers=bad)
        with pytest.raises(ValueError, match='chunksize must be a positive int'):
            optree.parallel.tree_map(abs, [1], chunksize=bad)
    with pytest.raises(TypeError, match=r'executor must be a concurrent\.futures\.Executor'):
        optree.parallel.tree_map(abs, [1], executor=object())
    # Flatten errors are optree.tree_map's.
    with pytest.raises(TypeError, match='namespace must be a string'):
        optree.parallel.tree_map(abs, [1], namespace=1)


def test_tree_map_nested_in_a_default_worker_runs_inline() -> None:
    tree = list(range(8))
    expected = optree.tree_map(parallel_support.nested_map, tree)
    assert (
        optree.parallel.tree_map(parallel_support.nested_map, tree, max_workers=2, chunksize=1)
        == expected
    )
    assert (
        optree.parallel.tree_map(
            lambda x: parallel_support.nested_map(x), tree, max_workers=2, chunksize=1
        )
        == expected
    )


def test_shutdown_releases_the_default_pools_and_later_calls_recreate_them() -> None:
    optree.parallel.tree_map(parallel_support.negate, list(range(10)), max_workers=2, chunksize=2)
    assert optree.parallel._pools
    pools = list(optree.parallel._pools.values())
    optree.parallel.shutdown()
    assert not optree.parallel._pools
    for pool in pools:
        with pytest.raises(RuntimeError):
            pool.submit(abs, 1)
    assert optree.parallel.tree_map(
        parallel_support.negate, [1, 2, 3], max_workers=2, chunksize=1
    ) == [-1, -2, -3]
    assert optree.parallel._pools


def test_default_pool_shut_down_by_another_thread_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # shutdown() in another thread between a call's taking a default pool and its submitting
    # chunks to it: the call maps what the pool no longer takes in the calling thread.
    original = optree.parallel._pool

    def pool_shut_down_just_after(backend: str, workers: int) -> Any:
        pool = original(backend, workers)
        optree.parallel.shutdown(wait=False)
        return pool

    monkeypatch.setattr(optree.parallel, '_pool', pool_shut_down_just_after)
    tree = list(range(40))
    backend = optree.parallel._default_backend(parallel_support.negate)
    for func in (parallel_support.negate, lambda x: -x):  # interpreters (3.14) or threads
        assert optree.parallel.tree_map(func, tree, max_workers=3, chunksize=2) == [
            -x for x in tree
        ]
    # A shut-down pool is not a func the workers cannot run: the rule still holds for it.
    assert optree.parallel._default_backend(parallel_support.negate) == backend


def test_pack_unpack_and_default_pools_from_several_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Threads pack and unpack trees of several shapes (a small cache: entries go while others
    # read them) and map with the default pools, while one of them shuts the pools down now and
    # then; on free-threaded builds all at once.
    monkeypatch.setattr(optree.parallel, '_CACHE_SIZE', 4)
    shapes = [
        lambda i: {'a': i, 'b': [float(i), 'x' * (i % 5)]},
        lambda i: [i, (i, i), None],
        lambda i: collections.OrderedDict((f'k{j}', j) for j in range(i % 7)),
        lambda i: {f'k{j}': j for j in range(i % 13)},
        lambda i: collections.deque(range(i % 4), maxlen=5),
        lambda i: collections.defaultdict(list, {'x': i, 'y': [i]}),
        lambda i: Pair(i, [Node2(i, None)]),
    ]
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def work(seed: int) -> None:
        try:
            barrier.wait()
            for n in range(300):
                tree = shapes[(seed + n) % len(shapes)](n % 40)
                result = optree.parallel.unpack(optree.parallel.pack(tree, namespace='support'))
                assert result == tree and type(result) is type(tree), (tree, result)
                if n % 25 == 0:
                    leaves = list(range(n % 37 + 1))
                    mapped = optree.parallel.tree_map(
                        parallel_support.negate, leaves, max_workers=3, chunksize=2
                    )
                    assert mapped == [-x for x in leaves]
                if seed == 0 and n % 60 == 0:
                    optree.parallel.shutdown(wait=False)
        except BaseException as ex:  # reported below
            errors.append(ex)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


# ------------------------------------------------------------------------ the default backend


def _lambda(x: Any) -> Any:
    return x


def test_default_backend_rule() -> None:
    expected = 'threads'
    if not FREE_THREADED and HAS_INTERPRETER_POOL:
        expected = 'interpreters'
    assert optree.parallel._default_backend(parallel_support.negate) == expected
    assert optree.parallel._default_backend(abs) == expected  # a builtin, by reference
    assert optree.parallel._default_backend(math.sqrt) == expected
    assert optree.parallel._default_backend(float) == expected  # a class
    # Not found by module and qualified name: threads.
    assert optree.parallel._default_backend(lambda x: x) == 'threads'
    assert optree.parallel._default_backend(_lambda.__get__(1)) == 'threads'  # a bound method
    local = parallel_support.negate

    def closure(x: Any) -> Any:
        return local(x)

    assert optree.parallel._default_backend(closure) == 'threads'


def test_default_pool_runs_where_the_rule_says() -> None:
    tree = list(range(40))
    main = optree._C.get_current_interpreter_id()
    caller = threading.get_ident()
    # With threads the calling thread maps chunks too, and all of them while the pool is
    # starting up: map until a pool worker took part. With interpreters it only waits.
    for _ in range(100):
        results = optree.parallel.tree_map(
            parallel_support.where_slowly, tree, max_workers=2, chunksize=5
        )
        assert [leaf for leaf, _, _ in results] == tree
        runners = {(interpreter, thread) for _, interpreter, thread in results}
        if runners - {(main, caller)}:
            break
    else:
        raise AssertionError('no pool worker ever mapped a chunk')
    others = runners - {(main, caller)}
    if not FREE_THREADED and HAS_INTERPRETER_POOL:
        assert all(interpreter != main for interpreter, _ in runners)
        assert len({interpreter for interpreter, _ in runners}) <= 2  # max_workers
    else:
        assert (main, caller) in {(interpreter, thread) for _, interpreter, thread in results[:5]}
        assert all(interpreter == main for interpreter, _ in others)
    # A lambda runs on threads of this interpreter everywhere.
    results = optree.parallel.tree_map(
        lambda x: parallel_support.where(x), tree, max_workers=2, chunksize=5
    )
    assert {interpreter for _, interpreter, _ in results} == {main}
    # max_workers=1 and a single chunk: the calling thread alone.
    for kwargs in ({'max_workers': 1}, {'max_workers': 2, 'chunksize': 40}):
        results = optree.parallel.tree_map(parallel_support.where, tree, **kwargs)
        assert {(interpreter, thread) for _, interpreter, thread in results} == {(main, caller)}


@pytest.mark.skipif(
    FREE_THREADED or not HAS_INTERPRETER_POOL,
    reason='the interpreter pool is the default on 3.14+ GIL builds only',
)
def test_default_interpreter_pool_measures_func_on_the_first_leaves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    main = optree._C.get_current_interpreter_id()
    caller = threading.get_ident()
    # Work under the threshold (2 ms by default; raised here so that a slow build, under
    # AddressSanitizer say, stays under it too): all here, past the measured leaves.
    with monkeypatch.context() as patch:
        patch.setattr(optree.parallel, '_PARALLEL_MIN_SECONDS', 60.0)
        tree = list(range(3000))
        results = optree.parallel.tree_map(parallel_support.where, tree, max_workers=2)
    assert [leaf for leaf, _, _ in results] == tree
    assert {(interpreter, thread) for _, interpreter, thread in results} == {(main, caller)}
    # 1 ms per leaf: the first leaf here (it alone takes longer than the measurement), the
    # rest on the worker interpreters, in order.
    tree = list(range(40))
    results = optree.parallel.tree_map(parallel_support.where_slowly, tree, max_workers=2)
    assert [leaf for leaf, _, _ in results] == tree
    here = [(interpreter, thread) == (main, caller) for _, interpreter, thread in results]
    assert here[0]
    assert not any(here[1:])
    assert 1 <= len({interpreter for _, interpreter, _ in results[1:]}) <= 2
    # A failure in the measured leaves, and one in the workers' part: the first failing leaf.
    for tree, index in (([-1, *range(10)], 0), ([*range(1, 30), -5, -6], 29)):
        ex = raised(optree.parallel.tree_map, parallel_support.fail_on_negative_late, tree)
        assert isinstance(ex, parallel_support.LeafError), ex
        assert ex.args[1] == tree[index]
        assert f'at leaf {index} of the tree' in ex.__notes__[-1]
    # StopIteration among the measured leaves: unflatten reads on, as in optree.tree_map.
    with pytest.raises(ValueError, match='leaves'):
        optree.parallel.tree_map(parallel_support.stop_at_three, list(range(10)))
    with pytest.raises(ValueError, match='leaves'):
        optree.tree_map(parallel_support.stop_at_three, list(range(10)))


@pytest.mark.skipif(
    FREE_THREADED or not HAS_INTERPRETER_POOL,
    reason='the interpreter pool is the default on 3.14+ GIL builds only',
)
def test_default_interpreter_pool_falls_back_to_the_calling_interpreter() -> None:
    # Leaves that do not pickle: the whole map goes to threads.
    tree = [lambda: 1, lambda: 2, lambda: 3, lambda: 4]
    assert optree.parallel.tree_map(parallel_support.tag, tree, max_workers=2, chunksize=1) == [
        ('mapped', leaf) for leaf in tree
    ]
    # Leaves whose class the workers cannot import (a module only this interpreter has).
    phantom = types.ModuleType('optree_phantom_module')
    exec('class Leaf:\n    def __init__(self, x):\n        self.x = x\n', phantom.__dict__)
    sys.modules['optree_phantom_module'] = phantom
    try:
        tree = [phantom.Leaf(i) for i in range(4)]
        results = optree.parallel.tree_map(parallel_support.where, tree, max_workers=2, chunksize=1)
    finally:
        del sys.modules['optree_phantom_module']
    main = optree._C.get_current_interpreter_id()
    assert [(leaf, interpreter) for leaf, interpreter, _ in results] == [
        (leaf, main) for leaf in tree
    ]
    # Results that cannot come back: mapped again here.
    results = optree.parallel.tree_map(
        parallel_support.make_callable, [1, 2, 3], max_workers=2, chunksize=1
    )
    assert [f() for f in results] == [1, 2, 3]


@pytest.mark.skipif(
    FREE_THREADED or not HAS_INTERPRETER_POOL,
    reason='the interpreter pool is the default on 3.14+ GIL builds only',
)
def test_default_interpreter_pool_falls_back_when_func_cannot_be_loaded_there() -> None:
    # func found by name here, in a module that subinterpreters cannot import (numpy's
    # functions, say): its chunks are mapped in the calling thread, and func goes to threads
    # from then on.
    from harness import main_interpreter_only

    func = main_interpreter_only.slow_negate
    tree = list(range(40))
    for _ in range(20):
        assert optree.parallel._default_backend(func) == 'interpreters'
        assert optree.parallel.tree_map(func, tree, max_workers=2, chunksize=2) == [
            -x for x in tree
        ]
        if optree.parallel._default_backend(func) == 'threads':
            break
    else:
        raise AssertionError('no pool worker ever took a chunk')
    assert optree.parallel.tree_map(func, tree, max_workers=2, chunksize=2) == [-x for x in tree]


def test_explicit_remote_executors_raise_when_leaves_or_results_cannot_travel(
    interpreter_pool: Any, process_pool: Any
) -> None:
    for pool in (interpreter_pool, process_pool):
        ex = raised(optree.parallel.tree_map, parallel_support.tag, [lambda: 1], executor=pool)
        assert 'while pickling leaf 0' in ' '.join(getattr(ex, '__notes__', []))
        ex = raised(optree.parallel.tree_map, parallel_support.make_callable, [1, 2], executor=pool)
        assert 'could not send back the results' in ex.__notes__[-1]


# ------------------------------------------------------------------------ pack / unpack


def shareable_types_only(obj: Any) -> bool:
    if type(obj) is tuple:
        return all(shareable_types_only(item) for item in obj)
    return type(obj) in (str, bytes, int, float, bool, type(None), memoryview)


@pytest.mark.parametrize('variant', list(VARIANTS))
def test_pack_unpack_round_trips_the_zoo(variant: str) -> None:
    for entry_id in ZOO_IDS:
        tree, kwargs = parallel_support.zoo_tree(entry_id, variant)
        # What unflattening gives (a custom unflatten may not rebuild the very same object).
        expected = optree.tree_unflatten(*reversed(optree.tree_flatten(tree, **kwargs)))
        if not _pickles(optree.tree_leaves(tree, **kwargs)):  # sys.float_info as a leaf
            assert variant == 'is_leaf-tuple'
            with pytest.raises(pickle.PicklingError):
                optree.parallel.pack(tree, **kwargs)
            continue
        packed = optree.parallel.pack(tree, **kwargs)
        assert shareable_types_only(packed)
        if HAS_INTERPRETER_POOL:
            from concurrent import interpreters

            assert interpreters.is_shareable(packed)
        same_tree(optree.parallel.unpack(packed), expected, **kwargs)
        for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
            same_tree(
                optree.parallel.unpack(pickle.loads(pickle.dumps(packed, protocol))),
                expected,
                **kwargs,
            )
        assert optree.tree_structure(
            optree.parallel.unpack(packed), **kwargs
        ) == optree.tree_structure(tree, **kwargs)


def test_pack_reuses_the_structure_of_a_shape() -> None:
    first = optree.parallel.pack({'a': [1, 2], 'b': (3.0, 'x')})
    second = optree.parallel.pack({'a': [4, 5], 'b': (6.0, 'y')})
    assert first[2] is second[2]  # the same encoding object
    assert first[1] is second[1]
    assert optree.parallel.unpack(second) == {'a': [4, 5], 'b': (6.0, 'y')}
    other = optree.parallel.pack({'a': [4, 5], 'c': (6.0, 'y')})
    assert other[2] != first[2]


def test_pack_tells_apart_what_treespec_equality_does_not() -> None:
    # Keys and metadata equal under == but of other types or signs, and dict insertion order.
    trees = [
        {1: 'a', 2: 'b'},
        {True: 'a', 2: 'b'},
        {1.0: 'a', 2: 'b'},
        {2: 'b', 1: 'a'},
        {0.0: 'z'},
        {-0.0: 'z'},
        collections.OrderedDict([(1, 'a')]),
        collections.OrderedDict([(True, 'a')]),
        Node2(1, 2, label=1),
        Node2(1, 2, label=True),
        Node2(1, 2, label=(1, 2.0)),
        Node2(1, 2, label=(1, 2)),
        Node2(1, 2, label={'k': 1}),
        Node2(1, 2, label={'k': True}),
        collections.defaultdict(int, {1: 'a'}),
        collections.defaultdict(float, {1: 'a'}),
        collections.deque([1], maxlen=3),
        collections.deque([1], maxlen=1),
    ]
    for _ in range(2):  # the second round hits the caches
        for tree in trees:
            result = optree.parallel.unpack(optree.parallel.pack(tree, namespace='support'))
            assert repr(result) == repr(tree)
            assert [type(k) for k in getattr(result, 'keys', list)()] == [
                type(k) for k in getattr(tree, 'keys', list)()
            ]
            if isinstance(tree, Node2):
                assert repr(result.label) == repr(tree.label)
    # The namespace and none_is_leaf are part of the structure.
    tree = [None, Node2(1, 2)]
    for kwargs in (
        {},
        {'namespace': 'support'},
        {'none_is_leaf': True},
        {'none_is_leaf': True, 'namespace': 'support'},
    ):
        packed = optree.parallel.pack(tree, **kwargs)
        assert optree.tree_structure(
            optree.parallel.unpack(packed), **kwargs
        ) == optree.tree_structure(tree, **kwargs)


class Color(enum.IntEnum):
    RED = 1


class Float(float):
    pass


class Pt(NamedTuple):
    x: Any
    y: Any


def test_pack_leaves_of_every_kind() -> None:
    big = b'x' * 100_000
    view = memoryview(b'abcdef')
    leaves = [
        None,
        True,
        False,
        0,
        -1,
        2**63 - 1,
        -(2**63),
        2**63,
        -(2**200),
        1.5,
        -0.0,
        math.inf,
        math.nan,
        'text',
        '',
        'ünïcode ✓',
        '\ud800',
        b'',
        b'small',
        big,
        view,
        1j,
        Color.RED,
        Float(2.5),
        Pt(1, 2),
        (1, 2),
        [3],
        {'k': 1},
        {1, 2},
        frozenset({3}),
        range(3),
        ...,
        int,
    ]
    packed = optree.parallel.pack(leaves, is_leaf=lambda x: x is not leaves)
    objects = packed[4]
    assert objects == (big, view)  # large bytes and memoryviews travel as themselves
    assert objects[0] is big
    result = optree.parallel.unpack(packed)
    assert len(result) == len(leaves)
    for got, want in zip(result, leaves, strict=True):
        assert type(got) is type(want)
        if isinstance(want, float) and math.isnan(want):
            assert math.isnan(got)
        else:
            assert repr(got) == repr(want)
            assert got == want
    assert math.copysign(1.0, result[10]) == -1.0
    # Natively encoded leaves are not pickled: a float takes a tag and 8 bytes.
    assert len(optree.parallel.pack([float(i) for i in range(1000)])[3]) == 2 + 9 * 1000


def test_pack_errors_name_what_cannot_travel() -> None:
    with pytest.raises(Exception) as info:
        optree.parallel.pack([1, 2, threading.Lock()])
    assert info.value.__notes__[-1] == 'optree.parallel: while pickling leaf 2 (of type lock)'

    Local = collections.namedtuple('Local', 'a b')
    with pytest.raises(TypeError, match=r'cannot send <class .*Local.*>: a receiving interpreter'):
        optree.parallel.pack([Local(1, 2)])


def test_unpack_validates_its_input() -> None:
    packed = optree.parallel.pack({'a': [1, 2.0, 'x'], 'b': None})
    fmt, key, structure, data, objects = packed
    bad_inputs = [
        None,
        (),
        [fmt, key, structure, data, objects],
        ('other', key, structure, data, objects),
        (fmt, key, structure, data),
        (fmt, 'key', structure, data, objects),
        (fmt, key, structure.decode('latin-1'), data, objects),
    ]
    for bad in bad_inputs:
        with pytest.raises(ValueError, match=r'optree\.parallel'):
            optree.parallel.unpack(bad)
    bad_structures = [b'', b'OPTS', structure[:-1], structure + b'\x00', b'XXXX' + structure[4:]]
    bad_leaves = [
        (b'', ()),
        (data[:-1], ()),
        (data + b'N', ()),
        (b'\x01o', ()),
        (b'\x01N', (1,)),
        (b'\x02N', ()),
    ]
    for bad_structure in bad_structures:
        fresh_key = bytes(16)
        with pytest.raises(ValueError, match='malformed packed data'):
            optree.parallel.unpack((fmt, fresh_key, bad_structure, data, objects))
    for bad_data, bad_objects in bad_leaves:
        with pytest.raises(ValueError, match='malformed packed data'):
            optree.parallel.unpack((fmt, key, structure, bad_data, bad_objects))
    # The leaf count must match the structure.
    with pytest.raises(ValueError, match='leaves'):
        optree.parallel.unpack((fmt, key, structure, b'\x02NN', ()))


class Wide:
    """A custom node type with many children, each with a path entry."""

    def __init__(self, *items: Any) -> None:
        self.items = items


def test_unpack_fills_no_container_that_python_code_can_see() -> None:
    # Unpickling a leaf, key, metadata item or path entry runs Python code in the middle of
    # unpack: it must find no list or tuple with empty slots (touching one crashes).
    spy = parallel_support.HalfBuiltSpy
    entries = (spy(1113), *range(1112))
    optree.register_pytree_node(
        Wide,
        lambda node: (node.items, None, entries),
        lambda _, children: Wide(*children),
        namespace='support',
    )
    try:
        trees = {
            'the list of leaves': [spy(7771), *[1.0] * 7770],
            'a tuple in a dict key': {(spy(5557), *range(5556)): 1},
            'the keys of a dict': {spy(3331): 0, **{i: i for i in range(3330)}},
            'a list in custom metadata': [Node2(1, 2, label=[spy(2221), *range(2220)])],
            'the path entries of a custom node': Wide(*range(1113)),
        }
        for what, tree in trees.items():
            spy.seen.clear()
            packed = optree.parallel.pack(tree, namespace='support')
            optree.parallel._received.clear()
            optree.parallel.unpack(packed)
            assert spy.seen == [], what
    finally:
        optree.unregister_pytree_node(Wide, namespace='support')


class Holder:
    """A custom node type whose metadata is a list the test changes while pack runs."""

    def __init__(self, meta: list[Any]) -> None:
        self.meta = meta


def test_pack_remembers_only_types_it_holds() -> None:
    # pack encodes each type once, remembered by identity; a type in a list of custom metadata
    # can die while pack runs (the pickling of a later item removes it), and a new type can
    # take its memory: it must not be sent under the dead type's name.
    phantom = types.ModuleType('optree_review_phantom')
    sys.modules[phantom.__name__] = phantom

    def make(name: str) -> type:
        cls = type(name, (), {'__module__': phantom.__name__})
        setattr(phantom, name, cls)
        return cls

    class DropFirst:
        def __reduce__(self) -> Any:
            first.pop(0)
            del phantom.A
            return (int, (0,))

    class MakeAnother:
        def __reduce__(self) -> Any:
            gc.collect()  # A dies: types are in reference cycles
            third.append(make('B'))
            return (int, (0,))

    first: list[Any] = [make('A'), DropFirst()]
    third: list[Any] = []
    optree.register_pytree_node(
        Holder, lambda h: ((), h.meta), lambda meta, _: Holder(meta), namespace='review'
    )
    try:
        tree = [Holder(first), Holder([MakeAnother()]), Holder(third)]
        packed = optree.parallel.pack(tree, namespace='review')
        make('A')  # the first metadata names it
        optree.parallel._received.clear()
        unpacked = optree.parallel.unpack(packed)
        assert [holder.meta for holder in unpacked] == [[phantom.A, 0], [0], [phantom.B]]
    finally:
        optree.unregister_pytree_node(Holder, namespace='review')
        del sys.modules[phantom.__name__]


def test_unpack_names_another_version_of_the_format() -> None:
    fmt, key, structure, data, objects = optree.parallel.pack({'a': [1, 2.0]})
    with pytest.raises(ValueError) as info:
        optree.parallel.unpack(('optree.parallel.pack/2', key, structure, data, objects))
    assert str(info.value) == (
        "optree.parallel.unpack: the data was packed in format 'optree.parallel.pack/2' (by "
        "another version of optree?); this version reads 'optree.parallel.pack/1'"
    )
    newer = structure[:4] + b'\x02' + structure[5:]
    with pytest.raises(ValueError) as info:
        optree.parallel.unpack((fmt, bytes(16), newer, data, objects))
    assert str(info.value) == (
        'optree.parallel: malformed packed data: a structure encoding of version 2 (by another '
        'version of optree?); this version reads version 1.'
    )


def test_unpack_does_not_trust_a_key_for_another_encoding() -> None:
    first = optree.parallel.pack([1, 2])
    second = optree.parallel.pack((1, 2))
    forged = (first[0], first[1], second[2], second[3], second[4])
    assert optree.parallel.unpack(forged) == (1, 2)
    assert optree.parallel.unpack(first) == [1, 2]


def test_unpack_missing_registration_in_this_interpreter() -> None:
    parallel_support.register_unregistered(namespace='temporary')
    try:
        packed = optree.parallel.pack([Unregistered(1, 2)], namespace='temporary')
    finally:
        optree.unregister_pytree_node(Unregistered, namespace='temporary')
    optree.parallel._received.clear()
    with pytest.raises(optree.parallel.UnpackError) as info:
        optree.parallel.unpack(packed)
    message = str(info.value)
    assert (
        'the custom node type harness.parallel_support.Unregistered '
        'is not registered in this interpreter' in message
    )
    assert "looked up in namespace 'temporary'" in message
    assert "namespace='temporary'" in message


def test_unpack_follows_the_registry_of_this_interpreter() -> None:
    # A structure decoded before is reused only while its custom node types still have the
    # registrations it was bound to.
    parallel_support.register_unregistered(namespace='changing')
    try:
        packed = optree.parallel.pack({'u': Unregistered(1, 2)}, namespace='changing')
        assert optree.parallel.unpack(packed) == {'u': Unregistered(1, 2)}
    finally:
        optree.unregister_pytree_node(Unregistered, namespace='changing')
    with pytest.raises(optree.parallel.UnpackError, match='is not registered in this interpreter'):
        optree.parallel.unpack(packed)
    optree.register_pytree_node(
        Unregistered,
        lambda node: (node.items, None),
        lambda _, children: ('rebuilt', *children),
        namespace='changing',
    )
    try:
        assert optree.parallel.unpack(packed) == {'u': ('rebuilt', 1, 2)}
    finally:
        optree.unregister_pytree_node(Unregistered, namespace='changing')


def test_unpack_cannot_find_a_type() -> None:
    packed = optree.parallel.pack([Node2(1, 2)], namespace='support')
    fmt, _, structure, data, objects = packed
    renamed = structure.replace(b'parallel_support', b'parallel_missing')
    with pytest.raises(optree.parallel.UnpackError) as info:
        optree.parallel.unpack((fmt, bytes(16), renamed, data, objects))
    message = str(info.value)
    assert message.startswith(
        'optree.parallel.unpack: cannot find harness.parallel_missing.Node2, the custom node type '
        "registered in namespace 'support' by the sender, in this interpreter (ModuleNotFoundError"
    )
    assert isinstance(info.value.__cause__, ImportError)


@needs_interpreters
def test_pack_unpack_through_queue_call_and_interpreter_pool() -> None:
    from concurrent import interpreters
    from concurrent.futures import InterpreterPoolExecutor

    tree = {
        'b': (1.5, 'x', None),
        'a': [Node2(1, [2.0]), {3: b'y'}],
        'c': collections.OrderedDict(z=1),
    }
    interpreter = interpreters.create()
    try:
        interpreter.exec(
            f'import sys\nsys.path[:] = {sys.path!r}\n'
            'import optree.parallel\nfrom harness import parallel_support'
        )
        queue = interpreters.create_queue()
        interpreter.prepare_main(queue=queue)
        for _ in range(3):
            queue.put(optree.parallel.pack(tree, namespace='support'))
        interpreter.exec(
            'trees = [optree.parallel.unpack(queue.get()) for _ in range(3)]\n'
            'assert trees[0] == trees[2]\n'
            'queue.put(optree.parallel.pack(trees[0], namespace="support"))\n'
        )
        assert optree.parallel.unpack(queue.get()) == tree
        result = interpreter.call(
            optree.parallel.unpack, optree.parallel.pack(tree, namespace='support')
        )
        assert result == tree
    finally:
        interpreter.close()
    with InterpreterPoolExecutor(
        2, initializer=optree.parallel._prepare_worker, initargs=(list(sys.path),)
    ) as pool:
        packed = optree.parallel.pack(tree, namespace='support')
        back = pool.submit(
            optree.parallel._map_packed, parallel_support.tag, optree.parallel._pack_list([packed])
        ).result()
        assert back[0] == 'ok'
        (mapped,) = optree.parallel.unpack(back[1])
        assert mapped == ('mapped', packed)


@needs_interpreters
def test_unpack_in_a_subinterpreter_that_lacks_the_registration() -> None:
    from concurrent import interpreters

    parallel_support.register_unregistered()
    try:
        packed = optree.parallel.pack({'u': Unregistered(1, 2)}, namespace='support')
    finally:
        optree.unregister_pytree_node(Unregistered, namespace='support')
    interpreter = interpreters.create()
    try:
        interpreter.exec(
            f'import sys\nsys.path[:] = {sys.path!r}\n'
            'import optree.parallel\nfrom harness import parallel_support'
        )
        interpreter.prepare_main(packed=packed)
        interpreter.exec(
            'try:\n'
            '    optree.parallel.unpack(packed)\n'
            'except optree.parallel.UnpackError as ex:\n'
            '    message = str(ex)\n'
            'expected = ("harness.parallel_support.Unregistered is not registered in this "\n'
            '            "interpreter")\n'
            'assert expected in message, message\n'
            'parallel_support.register_unregistered()\n'
            'assert optree.parallel.unpack(packed) == {"u": parallel_support.Unregistered(1, 2)}\n'
        )
    finally:
        interpreter.close()


class Pair(NamedTuple):
    a: Any
    b: Any


class MyDict(dict):
    pass


def _round_trip(tree: Any, **kwargs: Any) -> Any:
    result = optree.parallel.unpack(optree.parallel.pack(tree, **kwargs))
    expected = optree.tree_unflatten(*reversed(optree.tree_flatten(tree, **kwargs)))
    same_tree(result, expected, **kwargs)
    assert list(getattr(result, 'keys', list)()) == list(getattr(expected, 'keys', list)())
    return result


def test_pack_of_a_shape_sent_before_checks_the_whole_tree() -> None:
    # pack skips the treespec for trees of the shape it sent last (while walking them against
    # it): every difference must still give the tree's own structure.
    base = {'b': [1.0, (2, 'x')], 'a': Pair(None, {'k': b'y'}), 'c': None}
    variants = [
        {'b': [1.0, (2, 'x')], 'a': Pair(None, {'k': b'y'}), 'c': None},
        {'b': [[1.0], (2, 'x')], 'a': Pair(None, {'k': b'y'}), 'c': None},  # leaf -> node
        {'b': [1.0, (2, 'x')], 'a': Pair(None, {'k': b'y'}), 'c': 0},  # None -> leaf
        {'b': [1.0, (2, 'x'), 3], 'a': Pair(None, {'k': b'y'}), 'c': None},  # longer list
        {'b': [1.0, [2, 'x']], 'a': Pair(None, {'k': b'y'}), 'c': None},  # tuple -> list
        {'b': [1.0, (2, 'x')], 'a': (None, {'k': b'y'}), 'c': None},  # namedtuple -> tuple
        {'b': [1.0, (2, 'x')], 'a': Pt(None, {'k': b'y'}), 'c': None},  # another namedtuple
        {'a': Pair(None, {'k': b'y'}), 'b': [1.0, (2, 'x')], 'c': None},  # insertion order
        {'b': [1.0, (2, 'x')], 'a': Pair(None, {'j': b'y'}), 'c': None},  # another key
        {'b': [1.0, (2, 'x')], 'a': Pair(None, {''.join('k'): b'y'}), 'c': None},
        {'b': [1.0, (2, 'x')], 'a': Pair(None, MyDict(k=b'y')), 'c': None},  # dict subclass
        {'b': [1.0, (2, 'x')], 'a': Pair(None, collections.OrderedDict(k=b'y')), 'c': None},
        {'b': [1.0, (2, 'x')], 'a': Pair(None, {'k': Color.RED}), 'c': None},  # pickled leaf
        {'b': [1.0, (2, 'x')], 'a': Pair(None, {'k': Node2(1, 2)}), 'c': None},
        {'b': [1.0, (2, 'x')], 'a': Pair(None, {'k': memoryview(b'z')}), 'c': None},
        {'b': [1.0, (2, 'x')], 'a': Pair(None, {'k': b'y' * 1000}), 'c': None},
        [1.0, 2.0],
        (1.0, 2.0),
        5,
    ]
    for tree in variants:
        for kwargs in ({}, {'none_is_leaf': True}, {'namespace': 'support'}):
            _round_trip(base, **kwargs)
            _round_trip(tree, **kwargs)
            _round_trip(tree, **kwargs)


def test_pack_of_a_shape_sent_before_checks_ordered_dicts_defaultdicts_and_deques() -> None:
    def od(*keys: str) -> collections.OrderedDict[str, Any]:
        return collections.OrderedDict((k, i) for i, k in enumerate(keys))

    moved = od('a', 'b', 'c')
    moved.move_to_end('a')
    base = [
        od('a', 'b', 'c'),
        collections.defaultdict(list, {'y': 1, 'x': 2}),
        collections.deque([1, 2], maxlen=3),
    ]
    variants = [
        [od('a', 'b', 'c'), base[1], base[2]],
        [od('b', 'a', 'c'), base[1], base[2]],
        [moved, base[1], base[2]],
        [{'a': 0, 'b': 1, 'c': 2}, base[1], base[2]],
        [base[0], collections.defaultdict(dict, {'y': 1, 'x': 2}), base[2]],
        [base[0], collections.defaultdict(list, {'x': 2, 'y': 1}), base[2]],
        [base[0], collections.defaultdict(list, {'y': 1, 'z': 2}), base[2]],
        [base[0], {'y': 1, 'x': 2}, base[2]],
        [base[0], base[1], collections.deque([1, 2], maxlen=4)],
        [base[0], base[1], collections.deque([1, 2])],
        [base[0], base[1], collections.deque([1, 2, 3], maxlen=3)],
        [base[0], base[1], [1, 2]],
    ]
    # flatten takes an OrderedDict's keys in their dict order, as optree does: move_to_end
    # changes only the OrderedDict's own order, so `moved` flattens as a, b, c; after a tree of
    # keys b, c, a, pack must not take that own order for the dict order.
    moved_order = [od('b', 'c', 'a'), base[1], base[2]]
    for first in (base, moved_order):
        for tree in variants:
            _round_trip(first)
            _round_trip(tree)
            _round_trip(tree)


def test_pack_of_a_shape_sent_before_follows_the_registry() -> None:
    tree = {'x': [Unregistered(1, 2), 3.0], 'y': {'b': 1, 'a': 2}}
    _round_trip(tree, namespace='support')
    parallel_support.register_unregistered(namespace='support')
    try:
        result = _round_trip(tree, namespace='support')  # now a custom node, not a leaf
        assert optree.tree_leaves(result, namespace='support') == [1, 2, 3.0, 2, 1]
        assert optree.tree_leaves(_round_trip(tree)) == [Unregistered(1, 2), 3.0, 2, 1]
    finally:
        optree.unregister_pytree_node(Unregistered, namespace='support')
    result = _round_trip(tree, namespace='support')
    assert optree.tree_leaves(result, namespace='support') == [Unregistered(1, 2), 3.0, 2, 1]
    # The dict order mode: sorted keys, then insertion order, then sorted again.
    _round_trip(tree, namespace='support')
    with optree.dict_insertion_ordered(True, namespace='support'):
        result = _round_trip(tree, namespace='support')
        assert optree.tree_leaves(result, namespace='support') == [Unregistered(1, 2), 3.0, 1, 2]
    result = _round_trip(tree, namespace='support')
    assert optree.tree_leaves(result, namespace='support') == [Unregistered(1, 2), 3.0, 2, 1]


def test_pack_of_large_dicts_in_another_insertion_order() -> None:
    keys = [f'k{i:03d}' for i in range(100)]
    forward = {k: i for i, k in enumerate(keys)}
    backward = {k: forward[k] for k in reversed(keys)}
    shuffled = {k: forward[k] for k in keys[50:] + keys[:50]}
    for tree in (forward, backward, shuffled, backward, shuffled, forward, shuffled):
        result = _round_trip({'d': tree})
        assert list(result['d']) == list(tree)


def test_pack_of_a_shape_sent_before_with_equal_fresh_keys() -> None:
    text = '{"alpha": {"x": 1, "y": [2.5, null]}, "beta": [3, "four"], "7": {"1": 1}}'
    for _ in range(3):
        tree = json.loads(text)  # new key objects each time
        result = _round_trip(tree)
        assert result == tree
        assert list(result) == list(tree)
    for keys in ([1, 2], [True, 2], [1.0, 2], [2, 1]):
        tree = {k: str(k) for k in keys}
        result = _round_trip(tree)
        assert [type(k) for k in result] == [type(k) for k in tree]
