"""Scenarios of ``test_parallel_processes.py``, each run in a child process (``run_scenario``):
dask.distributed's executor, the default pools at interpreter exit, a receiving process, and
malformed packed data. Each raises ``AssertionError`` on failure and reports figures.
"""

from __future__ import annotations

import collections
import os
import pickle
import random
import sys
import time
from typing import Any

import optree
import optree.parallel

from harness import parallel_support
from harness.parallel_support import LeafError, Node2
from harness.subinterpreters import report_figures


def _raised(func: Any, /, *args: Any, **kwargs: Any) -> BaseException:
    try:
        func(*args, **kwargs)
    except Exception as ex:
        return ex
    raise AssertionError('did not raise')


class _Recording:
    """An executor that records what it is asked to run, then forwards it."""

    def __init__(self, executor: Any) -> None:
        self.executor = executor
        self.calls: list[tuple[Any, tuple[Any, ...]]] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((fn, args))
        return self.executor.submit(fn, *args, **kwargs)


def scenario_dask(workers: int = 2) -> None:
    """optree.parallel.tree_map on a dask.distributed LocalCluster's executor (worker processes)."""
    import tempfile
    from pathlib import Path

    from distributed import Client, LocalCluster

    from harness.zoo import VARIANTS, ZOO

    # The zoo as modules, on the path the worker processes start with.
    zoo_dir = tempfile.mkdtemp(prefix='optree-zoo-')
    parallel_support.write_zoo_modules(Path(zoo_dir))
    sys.path.insert(0, zoo_dir)
    start = time.perf_counter()
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
        ) as cluster,
        Client(cluster) as client,
    ):
        started = time.perf_counter() - start
        executor = _Recording(client.get_executor())
        trees = [
            {'b': [1.5, (2, 'x')], 'a': {'k': None, 'j': b'y'}, 'c': list(range(30))},
            [Node2({'k': [1, 2]}, Node2(3, 4, label='inner'), label='outer'), 5.0],
            {f'k{i}': (float(i), str(i)) for i in range(200)},
        ]
        for tree in trees:
            for func in (parallel_support.tag, lambda x: ('lambda', x)):
                expected = optree.tree_map(func, tree, namespace='support')
                actual = optree.parallel.tree_map(
                    func, tree, executor=executor, max_workers=workers, namespace='support'
                )
                assert actual == expected, (actual, expected)
            rest = optree.tree_map(parallel_support.tag, tree, namespace='support')
            expected = optree.tree_map(parallel_support.tag, tree, rest, namespace='support')
            actual = optree.parallel.tree_map(
                parallel_support.tag,
                tree,
                rest,
                executor=executor,
                chunksize=7,
                namespace='support',
            )
            assert actual == expected
        # The zoo: equal results, or the pickling error of leaves that pickle nowhere.
        zoo_maps = 0
        for variant in VARIANTS:
            for entry in ZOO:
                tree, kwargs = parallel_support.zoo_tree(entry.id, variant)
                expected = optree.tree_map(parallel_support.tag, tree, **kwargs)
                try:
                    pickle.dumps(optree.tree_leaves(tree, **kwargs))
                except Exception:
                    ex = _raised(
                        optree.parallel.tree_map,
                        parallel_support.tag,
                        tree,
                        executor=executor,
                        **kwargs,
                    )
                    assert 'while pickling leaf' in ex.__notes__[-1], ex
                    continue
                actual = optree.parallel.tree_map(
                    parallel_support.tag, tree, executor=executor, chunksize=8, **kwargs
                )
                assert repr(actual) == repr(expected), (entry.id, variant, actual, expected)
                assert optree.tree_structure(actual, **kwargs) == optree.tree_structure(
                    expected, **kwargs
                )
                zoo_maps += 1
        # Chunks travel as pack output: (format, key, structure, leaves, objects) per column.
        assert executor.calls
        for fn, args in executor.calls:
            assert fn is optree.parallel._map_packed
            for packed in args[1:]:
                assert type(packed) is tuple and packed[0] == optree.parallel.PACK_FORMAT
                assert type(optree.parallel.unpack(packed)) is list
        # The first failing leaf's exception, with its path, and the worker's traceback.
        tree = {'a': list(range(20)), 'b': [3, -1, 4, -2], 'c': list(range(20))}
        expected = _raised(optree.tree_map, parallel_support.fail_on_negative, tree)
        actual = _raised(
            optree.parallel.tree_map,
            parallel_support.fail_on_negative,
            tree,
            executor=executor,
            chunksize=3,
        )
        assert type(actual) is LeafError and actual.args == expected.args, actual
        assert actual.__notes__[-1].endswith("at leaf 21 of the tree, path ('b', 1)"), actual
        assert 'fail_on_negative' in str(actual.__cause__)
        # The workers are other processes.
        pids = optree.parallel.tree_map(_pid, list(range(8)), executor=executor, chunksize=1)
        assert os.getpid() not in pids and 1 <= len(set(pids)) <= workers
    report_figures(
        cluster_start_seconds=round(started, 2), calls=len(executor.calls), zoo_maps=zoo_maps
    )


def _pid(_: Any) -> int:
    return os.getpid()


def scenario_pools_shut_down_at_exit() -> None:
    """The default pools are used, then the interpreter exits without calling shutdown()."""
    shut = []
    original = optree.parallel.shutdown

    def recording_shutdown(wait: bool = True) -> None:
        pools = sorted(type(pool).__name__ for pool in optree.parallel._pools.values())
        shut.append(pools)
        original(wait)
        print('shutdown at exit:', pools, flush=True)

    optree.parallel.shutdown = recording_shutdown  # the exit hook looks it up by name
    tree = list(range(64))
    # Threads (a lambda), and on 3.14+ with a GIL an interpreter pool (a module function; with a
    # chunksize, since without one a map this small stays in the calling thread).
    assert optree.parallel.tree_map(lambda x: x + 1, tree, max_workers=2) == [x + 1 for x in tree]
    assert optree.parallel.tree_map(parallel_support.negate, tree, max_workers=2, chunksize=8) == [
        -x for x in tree
    ]
    report_figures(pools=sorted(f'{kind}/{n}' for kind, n in optree.parallel._pools))


def scenario_tree_map_in_an_exit_hook() -> None:
    """tree_map with the default pools from atexit hooks, registered before and after
    optree.parallel's own: the pools are shut down (or take no more work), the map is not."""
    import atexit

    tree = list(range(64))
    expected = [-x for x in tree]

    def late(when: str) -> None:
        for func in (parallel_support.negate, lambda x: -x):  # interpreters or threads
            result = optree.parallel.tree_map(func, tree, max_workers=2, chunksize=4)
            assert result == expected, result
        print(f'mapped at exit ({when})', flush=True)

    atexit.register(late, 'after the pools shut down')  # atexit runs the last registered first
    for func in (parallel_support.negate, lambda x: -x):  # the pools start
        assert optree.parallel.tree_map(func, tree, max_workers=2, chunksize=4) == expected
    atexit.register(late, 'before the pools shut down')


_changing_tree: list[Any] = []
_armed = [False]


def _empty_the_tree() -> None:
    if _armed[0]:
        _armed[0] = False
        _changing_tree.clear()


class _EmptiesTheTree:
    def __get__(self, obj: Any, cls: Any) -> None:
        _empty_the_tree()


class HookedLeaf(tuple):
    """A leaf (a tuple subclass that is no namedtuple): classifying it reads ``_fields``."""

    _fields = _EmptiesTheTree()


class _HookedMeta(type):
    def __getattribute__(cls, name: str) -> Any:
        _empty_the_tree()
        return super().__getattribute__(name)


class HookedPoint(collections.namedtuple('HookedPointBase', 'x y'), metaclass=_HookedMeta):
    """A namedtuple node whose class attributes run Python code."""


def scenario_tree_changed_while_pack_classifies() -> None:
    """A tree of the shape sent last whose tuple subclass runs Python code when pack classifies
    it (a descriptor on the class, a metaclass): that code empties the tree. No crash, and no
    tree made of what the code freed: if the code ran, pack raises flatten's IndexError for the
    list that shrank under it; if it did not (the class was known), pack gives the tree."""
    for make in (
        lambda: [HookedLeaf((1,)), 'y' * 100],
        lambda: [HookedPoint(1.0, 2.0), 'y' * 100],
    ):
        optree.parallel.pack(make())  # the shape sent last
        for _ in range(3):
            _changing_tree[:] = make()
            _armed[0] = True
            try:
                packed = optree.parallel.pack(_changing_tree)
            except IndexError:
                assert not _armed[0]
                outcome = 'IndexError'
            else:
                assert _armed[0], 'pack gave a tree that was emptied while it ran'
                assert optree.parallel.unpack(packed) == make()
                outcome = 'the tree'
            _armed[0] = False
            print('outcome:', outcome, flush=True)


class _EmptiesTheTreeWhenCollected:
    def __init__(self) -> None:
        self.cycle = self

    def __del__(self) -> None:
        _changing_tree.clear()


def scenario_garbage_collected_while_pack_walks(rounds: int = 10) -> None:
    """A collection of cyclic garbage whose finalizer empties the tree, in an allocation of pack
    walking a tree of the shape sent last (CPython 3.11 collects in the allocation; 3.12+ at
    the next bytecode boundary). No crash: the large bytes leaves it freed are gone from the
    walk, or kept by pack's result."""
    import gc

    def make() -> list[Any]:  # the OrderedDict's items are an allocation of the walk, last
        return [b'y' * 2**21, b'z' * 2**21, collections.OrderedDict(a=1)]

    optree.parallel.pack(make())  # the shape sent last
    for _ in range(rounds):
        _changing_tree[:] = make()
        gc.collect()
        _EmptiesTheTreeWhenCollected()
        gc.set_threshold(1)  # collect in the next allocation
        try:
            packed = optree.parallel.pack(_changing_tree)
        except IndexError:  # flatten's, for the list that shrank under it
            outcome = 'IndexError'
        else:
            assert optree.parallel.unpack(packed) in ([], make())
            outcome = 'a tree'
        finally:
            gc.set_threshold(700)
        print('outcome:', outcome, flush=True)


def scenario_default_pools_in_subinterpreters(isolated: bool, rounds: int = 3) -> None:
    """optree.parallel in subinterpreters (own GIL or shared): pack / unpack and tree_map on
    the default pools (threads there), then the subinterpreter is closed: its exit hook shuts
    its pools down, and their threads are gone."""
    from harness.subinterpreters import Subinterpreter

    def threads() -> int:
        return len(os.listdir('/proc/self/task'))

    baseline = threads()
    code = (
        'import optree, optree.parallel\n'
        'from harness import parallel_support\n'
        'from harness.parallel_support import Node2\n'
        'tree = {"a": [Node2(i, float(i)) for i in range(40)], "b": None}\n'
        'kwargs = {"namespace": "support"}\n'
        'expected = optree.tree_map(parallel_support.negate, tree, **kwargs)\n'
        'mapped = optree.parallel.tree_map(\n'
        '    parallel_support.negate, tree, max_workers=3, chunksize=4, **kwargs\n'
        ')\n'
        'assert mapped == expected, mapped\n'
        'assert optree.parallel.unpack(optree.parallel.pack(tree, **kwargs)) == tree\n'
        'assert [kind for kind, _ in optree.parallel._pools] == ["threads"]\n'
    )
    for _ in range(rounds):
        with Subinterpreter(isolated=isolated) as sub:
            sub.exec(code)
            assert threads() > baseline  # the pool's workers
        assert threads() == baseline, (threads(), baseline)
    report_figures(baseline_threads=baseline, rounds=rounds)


def scenario_receive_in_this_process(path: str, register: bool) -> None:
    """Unpacks the pack output pickled in `path`, with or without the registration."""
    with open(path, 'rb') as file:
        packed = pickle.load(file)
    if register:
        parallel_support.register_unregistered()
    try:
        tree = optree.parallel.unpack(packed)
    except optree.parallel.UnpackError as ex:
        print('UnpackError:', ex, flush=True)
        return
    print('unpacked:', repr(tree), flush=True)


def scenario_malformed_packed_data(rounds: int = 3000, seed: int = 0) -> None:
    """Random corruptions of pack output never crash unpack: they raise (or give some tree)."""
    rng = random.Random(seed)
    trees = [
        {'b': [1.5, (2, 'x')], 'a': {'k': None, 'j': b'y'}, 3: -(2**70)},
        [Node2({'k': [1, 2]}, Node2(3, 4, label='inner'), label=('outer', 1.0)), 5.0],
        optree.tree_map(str, {'x': list(range(20)), 'y': ({'z': 1},)}),
    ]
    outcomes: dict[str, int] = {}
    for round_ in range(rounds):
        tree = trees[round_ % len(trees)]
        fmt, key, structure, data, objects = optree.parallel.pack(tree, namespace='support')
        target = rng.choice(['structure', 'data'])
        blob = bytearray(structure if target == 'structure' else data)
        for _ in range(rng.randint(1, 4)):
            action = rng.random()
            position = rng.randrange(len(blob) + 1)
            if action < 0.5 and blob:
                blob[min(position, len(blob) - 1)] = rng.randrange(256)
            elif action < 0.75:
                del blob[position : position + rng.randint(1, 8)]
            else:
                blob[position:position] = bytes(
                    rng.randrange(256) for _ in range(rng.randint(1, 8))
                )
        if target == 'structure':
            packed = (fmt, os.urandom(16), bytes(blob), data, objects)
        else:
            packed = (fmt, key, structure, bytes(blob), objects)
        try:
            optree.parallel.unpack(packed)
            outcome = 'ok'
        except RecursionError:
            outcome = 'RecursionError'
        except Exception as ex:
            outcome = type(ex).__name__
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert outcomes.get('ValueError', 0) > rounds // 4, outcomes
    report_figures(outcomes=outcomes, python=sys.version.split()[0])
