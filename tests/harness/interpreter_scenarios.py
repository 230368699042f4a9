"""Scenarios of ``test_interpreters.py``. Each ``scenario_*`` function runs in the main
interpreter of a child process (a crash or a hang fails one test, not the session) and raises
``AssertionError`` on failure; the other functions also run inside subinterpreters, which import
this module by name (it imports only the standard library and optree).
"""

from __future__ import annotations

import collections
import os
import threading
import time
import traceback
from typing import Any, NamedTuple

import optree
import optree._C as _C

from harness.subinterpreters import (
    THREAD_TIMEOUT,
    Subinterpreter,
    SubinterpreterError,
    read_tokens,
    report_figures,
    run_threads,
)

GLOBAL = optree.registry.__GLOBAL_NAMESPACE  # type: ignore[attr-defined]
NAMESPACE = 'scenario'


class Point(NamedTuple):
    x: Any
    y: Any


class Box:
    """A custom node type; every interpreter that imports this module has its own class."""

    def __init__(self, *items: Any) -> None:
        self.items = items

    def __eq__(self, other: object) -> bool:
        return type(other) is Box and other.items == self.items

    def __repr__(self) -> str:
        return f'Box{self.items!r}'


def _flatten_box(box: Box) -> tuple[tuple[Any, ...], int, tuple[int, ...]]:
    return box.items, len(box.items), tuple(range(len(box.items)))


def _unflatten_box(metadata: int, children: Any) -> Box:
    return Box(*children)


def register_box(namespace: Any = NAMESPACE) -> None:
    optree.register_pytree_node(Box, _flatten_box, _unflatten_box, namespace=namespace)


def sample_trees() -> list[Any]:
    """Trees over every builtin node kind (plus ``Box`` where it is registered)."""
    return [
        1,
        None,
        [1, (2, 3), {'b': 4, 'a': [5, None]}],
        {'z': Point(1, [2]), 'y': collections.OrderedDict([('q', 1), ('p', (2,))])},
        collections.defaultdict(list, {3: 'x', 1: ('y', None), 2: []}),
        collections.deque([1, [2, 3], (4,)], maxlen=5),
        time.gmtime(0),  # a PyStructSequence: its static type is shared by every interpreter
        {1: 'int', 'a': 'str', (0,): 'tuple'},  # keys that do not sort
        (Box(1, [2, None]), {'k': Box()}),
        ((((((([[[1]]],),),),),),),),
    ]


def _double(x: Any) -> Any:
    return x * 2 if isinstance(x, int) else x


def reference_results() -> list[str]:
    """Flatten, unflatten, map and paths of every sample tree, as text.

    Registers ``Box`` in ``NAMESPACE`` if needed, so the custom node path is exercised too.
    """
    if optree.tree_leaves(Box(1), namespace=NAMESPACE) != [1]:
        register_box()
    results = []
    for tree in sample_trees():
        for options in ({}, {'none_is_leaf': True}, {'namespace': NAMESPACE}):
            leaves, spec = optree.tree_flatten(tree, **options)
            rebuilt = optree.tree_unflatten(spec, leaves)
            paths, path_leaves, path_spec = optree.tree_flatten_with_path(tree, **options)
            results += [
                repr(leaves),
                repr(spec),
                repr(rebuilt == tree or repr(rebuilt) == repr(tree)),
                repr(optree.tree_map(_double, tree, **options)),
                repr(optree.tree_paths(tree, **options)),
                repr((paths, path_leaves == leaves, path_spec == spec)),
                repr(optree.tree_map_with_path(lambda p, x: len(p), tree, **options)),
                repr(list(optree.tree_iter(tree, **options))),
                repr((spec.num_leaves, spec.num_nodes)),
                repr(spec.accessors()),
            ]
    return results


# ------------------------------------------------------------------------- registry probes

STATIC_TYPES = (slice, range, memoryview)  # not node types; shared by every interpreter


def registry_probe() -> dict[str, Any]:
    """What this interpreter's registry says about every name a scenario may register."""
    probe: dict[str, Any] = {
        'size': _C.get_registry_size(),
        'size_global': _C.get_registry_size(''),
        'size_namespace': _C.get_registry_size(NAMESPACE),
        'ordered_global': _C.is_dict_insertion_ordered(''),
        'ordered_namespace': _C.is_dict_insertion_ordered(NAMESPACE),
        'ordered_namespace_own': _C.is_dict_insertion_ordered(NAMESPACE, False),
        'dict_global': optree.tree_leaves({'b': 1, 'a': 2}),
        'dict_namespace': optree.tree_leaves({'b': 1, 'a': 2}, namespace=NAMESPACE),
        'box_global': repr(optree.tree_structure(Box(1, 2))),
        'box_namespace': repr(optree.tree_structure(Box(1, 2), namespace=NAMESPACE)),
    }
    for static in STATIC_TYPES:
        instance = {slice: slice(1, 2, 3), range: range(3), memoryview: memoryview(b'ab')}[static]
        probe[f'{static.__name__}_global'] = repr(optree.tree_structure(instance))
        probe[f'{static.__name__}_namespace'] = repr(
            optree.tree_structure(instance, namespace=NAMESPACE)
        )
    return probe


def _flatten_static(obj: Any) -> tuple[tuple[Any, ...], None]:
    if isinstance(obj, slice):
        return (obj.start, obj.stop, obj.step), None
    return tuple(obj), None


def _unflatten_static(metadata: None, children: Any) -> Any:
    return tuple(children)


def register_everything() -> None:
    """Register ``Box`` and static types globally and in ``NAMESPACE``; order dicts by insertion."""
    register_box(GLOBAL)
    register_box(NAMESPACE)
    optree.register_pytree_node(slice, _flatten_static, _unflatten_static, namespace=GLOBAL)
    optree.register_pytree_node(range, _flatten_static, _unflatten_static, namespace=NAMESPACE)
    optree.register_pytree_node(memoryview, _flatten_static, _unflatten_static, namespace=NAMESPACE)
    _C.set_dict_insertion_ordered(True, NAMESPACE)
    _C.set_dict_insertion_ordered(True, '')


def churn_registry(rounds: int) -> int:
    """Register, use and unregister everything repeatedly; returns the flattened leaf count."""
    total = 0
    for _ in range(rounds):
        register_everything()
        total += len(optree.tree_leaves([Box(1, 2), slice(1, 2, 3), {'b': 1, 'a': 2}]))
        total += len(optree.tree_leaves([range(4), memoryview(b'xy')], namespace=NAMESPACE))
        for namespace in (GLOBAL, NAMESPACE):
            optree.unregister_pytree_node(Box, namespace=namespace)
        optree.unregister_pytree_node(slice, namespace=GLOBAL)
        optree.unregister_pytree_node(range, namespace=NAMESPACE)
        optree.unregister_pytree_node(memoryview, namespace=NAMESPACE)
        _C.set_dict_insertion_ordered(False, NAMESPACE)
        _C.set_dict_insertion_ordered(False, '')
    return total


def unregister_foreign() -> list[str]:
    """Try to unregister what only *another* interpreter registered: each must fail here."""
    failures = []
    for cls, namespace in ((slice, GLOBAL), (range, NAMESPACE), (memoryview, NAMESPACE)):
        try:
            optree.unregister_pytree_node(cls, namespace=namespace)
        except ValueError as ex:
            failures.append(type(ex).__name__)
        else:
            failures.append(f'unregistered {cls.__name__} here')
    return failures


# ------------------------------------------------------------------------------ scenarios


def scenario_concurrent_interpreters(count: int = 8, rounds: int = 20) -> None:
    """``count`` subinterpreters, one per thread, all alive at once, import optree and compute
    the sample results ``rounds`` times concurrently; each must equal the main interpreter's."""
    expected = reference_results()
    baseline = _C.get_alive_interpreter_ids()
    all_alive = threading.Barrier(count + 1, timeout=THREAD_TIMEOUT)
    checked = threading.Barrier(count + 1, timeout=THREAD_TIMEOUT)
    results: dict[int, list[list[str]]] = {}
    ids: dict[int, int] = {}

    def drive(index: int) -> None:
        try:
            with Subinterpreter() as interpreter:
                ids[index] = interpreter.id
                interpreter.exec('import optree\nfrom harness import interpreter_scenarios')
                all_alive.wait()
                checked.wait()
                results[index] = interpreter.call(
                    'from harness import interpreter_scenarios as s\n'
                    f'result = [s.reference_results() for _ in range({rounds})]'
                )
        except BaseException:
            all_alive.abort()
            checked.abort()
            raise

    def observe() -> None:
        all_alive.wait()
        alive = _C.get_alive_interpreter_ids()
        assert alive == baseline | set(ids.values()), (alive, baseline, ids)
        assert _C.get_num_interpreters_alive() == len(baseline) + count
        checked.wait()

    run_threads([lambda i=i: drive(i) for i in range(count)] + [observe])
    assert sorted(results) == list(range(count))
    for index, rounds_results in results.items():
        for got in rounds_results:
            mismatches = [(e, g) for e, g in zip(expected, got, strict=True) if e != g]
            assert not mismatches, f'interpreter {index}: {mismatches[:3]}'
    assert _C.get_alive_interpreter_ids() == baseline
    report_figures(interpreters=count, results_compared=count * rounds * len(expected))


def scenario_registrations_stay_in_their_interpreter() -> None:
    """A registers globally and in a namespace (own and shared static types) and orders dicts by
    insertion; B and the main interpreter see none of it, and cannot unregister it."""
    fresh = registry_probe()
    optree.register_pytree_node(
        bytearray, _flatten_static, _unflatten_static, namespace='main-only'
    )
    main_before = registry_probe()
    with Subinterpreter() as a, Subinterpreter() as b:
        probe = 'from harness import interpreter_scenarios as s\nresult = s.registry_probe()'
        b_fresh = b.call(probe)
        assert b_fresh == fresh, (b_fresh, fresh)
        a.exec('from harness import interpreter_scenarios as s\ns.register_everything()')
        in_a = a.call(probe)
        # A sees its own registrations...
        assert in_a['size'] == fresh['size'] + 5, in_a
        assert in_a['ordered_global'] and in_a['ordered_namespace_own'], in_a
        assert in_a['dict_global'] == [1, 2] and in_a['dict_namespace'] == [1, 2], in_a
        assert 'CustomTreeNode(Box[2]' in in_a['box_global'], in_a
        assert 'CustomTreeNode(Box[2]' in in_a['box_namespace'], in_a
        assert 'CustomTreeNode(slice[None]' in in_a['slice_global'], in_a
        assert in_a['range_global'] == fresh['range_global'], in_a
        assert 'CustomTreeNode(range[None]' in in_a['range_namespace'], in_a
        assert 'CustomTreeNode(memoryview[None]' in in_a['memoryview_namespace'], in_a
        # ...B and the main interpreter see none of them.
        assert b.call(probe) == fresh
        assert registry_probe() == main_before
        assert main_before['dict_global'] == [2, 1]
        # Nobody can unregister what another interpreter registered; the owner still can.
        assert (
            b.call(
                'from harness import interpreter_scenarios as s\nresult = s.unregister_foreign()'
            )
            == ['ValueError'] * 3
        )
        assert unregister_foreign() == ['ValueError'] * 3
        try:
            a.exec("import optree\noptree.unregister_pytree_node(bytearray, namespace='main-only')")
        except SubinterpreterError as ex:
            assert 'ValueError' in str(ex), ex
        else:
            raise AssertionError('a subinterpreter unregistered a type of the main interpreter')
        assert a.call(probe) == in_a
    assert registry_probe() == main_before
    optree.unregister_pytree_node(bytearray, namespace='main-only')
    assert registry_probe() == fresh


def scenario_subinterpreters_leave_the_main_registry_alone(
    count: int = 4, rounds: int = 50
) -> None:
    """Subinterpreters churn their registries (own and shared static types, both namespaces,
    dict order) in parallel while main threads flatten with main's own registrations: main's
    registry and results never change."""
    register_box(GLOBAL)
    optree.register_pytree_node(slice, _flatten_static, _unflatten_static, namespace=NAMESPACE)
    _C.set_dict_insertion_ordered(True, NAMESPACE)
    before = registry_probe()
    expected = reference_results()
    stop = threading.Event()
    checks = [0]

    def churn_in_subinterpreter() -> None:
        with Subinterpreter() as interpreter:
            leaves = interpreter.call(
                'from harness import interpreter_scenarios as s\n'
                f'result = s.churn_registry({rounds})'
            )
            assert leaves == rounds * 13, leaves

    def check_main() -> None:
        while not stop.is_set():
            assert registry_probe() == before
            assert reference_results() == expected
            checks[0] += 1

    errors: list[str] = []

    def guarded_check() -> None:
        try:
            check_main()
        except BaseException:
            errors.append(traceback.format_exc())
            stop.set()

    checker = threading.Thread(target=guarded_check, daemon=True)
    checker.start()
    try:
        run_threads([churn_in_subinterpreter] * count)
    finally:
        stop.set()
        checker.join(THREAD_TIMEOUT)
    assert not errors, errors[0]
    assert not checker.is_alive()
    assert registry_probe() == before
    assert reference_results() == expected
    report_figures(main_checks_during_churn=checks[0])


# Watched objects report their deallocation by writing a token to a pipe the main interpreter
# reads after the subinterpreter is destroyed. The sentinel class and the registered objects
# live in a module of their own (not ``__main__``), so a leak of the subinterpreter's
# ``__main__`` cannot hide or fake a release.
WATCHED_MODULE = """
import os
import optree

class Sentinel:
    def __init__(self, token, fd, write=os.write):
        self.token, self.fd, self.write = token, fd, write

    def __del__(self):
        self.write(self.fd, self.token.encode() + b'\\n')

class Watched:
    def __init__(self, *items):
        self.items = items

class Control:
    pass

def flatten(obj):
    return obj.items, None

def unflatten(metadata, children):
    return Watched(*children)

class Entry(optree.SequenceEntry):
    pass

def watch(tag, fd):
    for name, obj in (('type', Watched), ('flatten', flatten), ('unflatten', unflatten),
                      ('entry', Entry), ('control', Control)):
        obj.sentinel = Sentinel(f'{tag}:{name}', fd)
"""

WATCHED_TOKENS = ('type', 'flatten', 'unflatten', 'entry', 'control')


def _watched_setup(tag: str, fd: int, *, spec_holder: str | None, unregister: bool) -> str:
    """Subinterpreter code: define and register the watched objects; optionally keep a treespec
    of them alive (``spec_holder``: a module name) until the interpreter is destroyed."""
    code = (
        'import sys, types, optree\n'
        "watched = types.ModuleType('watched')\n"
        f'exec({WATCHED_MODULE!r}, watched.__dict__)\n'
        f'watched.watch({tag!r}, {fd})\n'
        'for namespace in (optree.registry.__GLOBAL_NAMESPACE, "ns"):\n'
        '    optree.register_pytree_node(watched.Watched, watched.flatten, watched.unflatten,\n'
        '                                path_entry_type=watched.Entry, namespace=namespace)\n'
        'leaves, spec = optree.tree_flatten([watched.Watched(1, 2)])\n'
        'assert leaves == [1, 2], leaves\n'
        'assert optree.tree_paths(watched.Watched(1), namespace="ns") == [(0,)]\n'
    )
    if spec_holder is not None:
        code += (
            f'holder = types.ModuleType({spec_holder!r})\n'
            f'holder.spec = spec\nsys.modules[{spec_holder!r}] = holder\n'
        )
    if unregister:
        code += (
            'for namespace in (optree.registry.__GLOBAL_NAMESPACE, "ns"):\n'
            '    optree.unregister_pytree_node(watched.Watched, namespace=namespace)\n'
        )
    return code + 'del watched, leaves, spec\n'


def scenario_destroy_releases_shard_and_registrations() -> None:
    """Destroying an interpreter removes its shard from the shard map and releases everything
    it registered (types, functions, path entry types), whether or not they were still
    registered and whether or not a treespec of them was still alive."""
    read_fd, write_fd = os.pipe()
    try:
        baseline = _C.get_alive_interpreter_ids()
        variants = {
            'registered': {'spec_holder': None, 'unregister': False},
            'unregistered': {'spec_holder': None, 'unregister': True},
            'spec-alive': {'spec_holder': 'spec_holder', 'unregister': False},
            'spec-alive-unregistered': {'spec_holder': 'spec_holder', 'unregister': True},
        }
        interpreters = {}
        for tag, options in variants.items():
            interpreter = Subinterpreter()
            interpreters[tag] = interpreter
            interpreter.exec(_watched_setup(tag, write_fd, **options))
        ids = {tag: interpreter.id for tag, interpreter in interpreters.items()}
        assert _C.get_alive_interpreter_ids() == baseline | set(ids.values())
        assert read_tokens(read_fd) == set(), 'released while the interpreter was alive'
        remaining = dict(interpreters)
        for tag in variants:
            remaining.pop(tag).close()
            alive = _C.get_alive_interpreter_ids()
            assert alive == baseline | {i.id for i in remaining.values()}, (tag, alive)
            assert _C.get_num_interpreters_alive() == len(baseline) + len(remaining)
            released = read_tokens(read_fd)
            expected = {f'{tag}:{name}' for name in WATCHED_TOKENS}
            assert released == expected, f'{tag}: released {released}, expected {expected}'
        assert _C.get_alive_interpreter_ids() == baseline
    finally:
        os.close(read_fd)
        os.close(write_fd)


def _rss_bytes() -> int:
    with open('/proc/self/statm') as statm:
        return int(statm.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def _native_heap_bytes() -> int | None:
    """Bytes in use from the C heap (glibc ``mallinfo2``): where the core's own allocations and
    CPython's non-object memory live, apart from the object arenas. None off glibc."""
    try:
        import ctypes

        class MallInfo2(ctypes.Structure):
            _fields_ = [
                (name, ctypes.c_size_t)
                for name in 'arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks '
                'fordblks keepcost'.split()
            ]

        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = MallInfo2
    info = mallinfo2()
    return int(info.uordblks + info.hblkhd)


CYCLE_CODE = """
import optree
class Cycled:
    def __init__(self, *items):
        self.items = items
optree.register_pytree_node(Cycled, lambda c: (c.items, None), lambda m, c: Cycled(*c),
                            namespace=optree.registry.__GLOBAL_NAMESPACE)
optree.register_pytree_node(Cycled, lambda c: (c.items, None), lambda m, c: Cycled(*c),
                            namespace='cycle')
def use():
    leaves, spec = optree.tree_flatten({'b': Cycled(1, [2]), 'a': (3, None)}, namespace='cycle')
    assert leaves == [3, 1, 2], leaves
    assert optree.tree_unflatten(spec, leaves)['b'].items == (1, [2])
use()
"""


def scenario_interpreter_cycles(cycles: int, warmup: int) -> None:
    """``cycles`` times: create an interpreter, import optree, register, flatten, destroy.

    Live shards return to the baseline exactly. Memory is bounded per cycle, on interpreters
    that share the main interpreter's allocator: CPython 3.12 and 3.13 never return an isolated
    interpreter's object arenas (about 4 MiB per interpreter importing optree's dependencies,
    optree or not), so RSS there measures CPython. Bounds, with the figures they were set from
    (1,000 cycles, 2 cores): C heap growth <= 2 KiB per cycle (measured 40 B on 3.12, 67 B on
    3.13, 571 B on 3.14; 5.9 KB while Cython's module-state table kept every ``optree._C`` and
    its module state alive); RSS growth <= 1 MiB per cycle (measured 356 KiB on 3.12 and
    545 KiB on 3.13, of which CPython alone - the same imports without optree - grows 314 and
    493 KiB).
    """
    max_heap_growth_per_cycle = 2 * 1024
    max_rss_growth_per_cycle = 1024 * 1024
    baseline = _C.get_alive_interpreter_ids()
    seen_before = _C.get_num_interpreters_seen()

    def cycle() -> None:
        with Subinterpreter(isolated=False) as interpreter:
            interpreter.exec(CYCLE_CODE)

    for _ in range(warmup):
        cycle()
    rss_start = _rss_bytes()
    heap_start = _native_heap_bytes()
    start = time.perf_counter()
    for _ in range(cycles):
        cycle()
    seconds = time.perf_counter() - start
    rss_growth = _rss_bytes() - rss_start
    heap_end = _native_heap_bytes()
    heap_growth = None if heap_start is None or heap_end is None else heap_end - heap_start
    report_figures(
        cycles=cycles,
        seconds=round(seconds, 1),
        ms_per_cycle=round(1000 * seconds / cycles, 1),
        rss_start_mib=round(rss_start / 2**20, 1),
        rss_growth_mib=round(rss_growth / 2**20, 1),
        rss_growth_per_cycle_kib=round(rss_growth / cycles / 1024, 1),
        heap_growth_kib=None if heap_growth is None else round(heap_growth / 1024, 1),
        heap_growth_per_cycle_bytes=None if heap_growth is None else round(heap_growth / cycles),
        bounds_per_cycle_kib={
            'heap': max_heap_growth_per_cycle // 1024,
            'rss': max_rss_growth_per_cycle // 1024,
        },
    )
    assert _C.get_alive_interpreter_ids() == baseline
    assert _C.get_num_interpreters_seen() == seen_before + warmup + cycles
    if heap_growth is not None:
        assert heap_growth <= cycles * max_heap_growth_per_cycle, heap_growth
    assert rss_growth <= cycles * max_rss_growth_per_cycle, rss_growth


def scenario_isolated_interpreter_cycles(cycles: int, warmup: int) -> None:
    """``cycles`` times: create an isolated interpreter (own GIL, own object allocator), import
    optree, register, flatten, destroy.

    CPython 3.14 gives a destroyed isolated interpreter's object arenas back only when none of its
    objects survives it, so RSS shows whether anything of optree outlives its interpreter. Bound:
    RSS growth <= 256 KiB per cycle (measured over 200 cycles on 3.14, 2 cores: about 0; 4.9 MiB
    per cycle while Cython's module-state table kept every ``optree._C`` alive).
    """
    max_rss_growth_per_cycle = 256 * 1024
    baseline = _C.get_alive_interpreter_ids()

    def cycle() -> None:
        with Subinterpreter(isolated=True) as interpreter:
            interpreter.exec(CYCLE_CODE)

    for _ in range(warmup):
        cycle()
    rss_start = _rss_bytes()
    start = time.perf_counter()
    for _ in range(cycles):
        cycle()
    seconds = time.perf_counter() - start
    rss_growth = _rss_bytes() - rss_start
    report_figures(
        cycles=cycles,
        seconds=round(seconds, 1),
        rss_start_mib=round(rss_start / 2**20, 1),
        rss_growth_per_cycle_kib=round(rss_growth / cycles / 1024, 1),
        bound_per_cycle_kib=max_rss_growth_per_cycle // 1024,
    )
    assert _C.get_alive_interpreter_ids() == baseline
    assert rss_growth <= cycles * max_rss_growth_per_cycle, rss_growth


def _pool_task(index: int) -> tuple[int, list[str]]:
    import optree._C

    return optree._C.get_current_interpreter_id(), reference_results()


def scenario_interpreter_pool(workers: int) -> None:
    """3.14's ``InterpreterPoolExecutor`` maps over ``workers`` interpreters: every task's
    results equal the main interpreter's; the pool's shards go away with the pool."""
    import functools
    from concurrent.futures import InterpreterPoolExecutor

    expected = reference_results()
    baseline = _C.get_alive_interpreter_ids()
    # Workers start with the process's default sys.path: give them this one, so they import
    # the same optree and this module (the task is pickled by reference).
    import sys

    set_path = functools.partial(exec, f'import sys\nsys.path[:] = {sys.path!r}', {})
    with InterpreterPoolExecutor(max_workers=workers, initializer=set_path) as pool:
        outcomes = list(pool.map(_pool_task, range(4 * workers)))
        alive_during = _C.get_alive_interpreter_ids()
    ids = {interpreter_id for interpreter_id, _ in outcomes}
    assert all(results == expected for _, results in outcomes)
    assert ids <= alive_during - baseline, (ids, alive_during, baseline)
    assert _C.get_alive_interpreter_ids() == baseline
    report_figures(tasks=len(outcomes), distinct_interpreters=len(ids))
