"""Threads: one leaf iterator shared by several threads, and reference cycles through treespecs
and iterators built in threads while another thread runs the collector. On free-threaded 3.14t
these run truly in parallel; on the GIL builds the switch interval is made tiny.

Each scenario (``harness/gc_scenarios.py``) runs in a child process under a timeout, with
``faulthandler`` on, so a crash or a deadlock fails one test with the threads' stacks.
"""

from __future__ import annotations

import pytest

from harness.subinterpreters import assert_passed, run_scenario, show_figures


@pytest.mark.parametrize('threads', [2, 8])
def test_threads_share_one_iterator(capsys, threads):
    result = run_scenario(
        'harness.gc_scenarios', 'scenario_shared_iterator', timeout=300, threads=threads, rounds=20
    )
    assert_passed(result)
    show_figures(capsys, f'{threads} threads on one iterator', result.figures)


def test_cycles_built_in_threads_are_collected(capsys):
    result = run_scenario(
        'harness.gc_scenarios',
        'scenario_garbage_collected_in_threads',
        timeout=300,
        threads=4,
        rounds=10,
    )
    assert_passed(result)
    show_figures(capsys, 'cycles collected while threads build more', result.figures)


def test_cycle_through_a_type_unregistered_while_another_thread_reads_the_registry() -> None:
    # Unregistering while another thread is inside a flatten retires a registry snapshot that
    # the other thread still reads; that snapshot (holding the registration) outlives the
    # unregistration. The collection that follows frees it first, then the cycle through the
    # type (before, the cycle waited for the next registry change in this interpreter).
    import gc
    import threading
    import weakref

    import optree

    namespace = 'gc-threads-retired'

    class Cyclic:
        pass

    optree.register_pytree_node(
        Cyclic, lambda obj: ((), None), lambda meta, children: meta, namespace=namespace
    )
    Cyclic.spec = optree.tree_structure([Cyclic(), Cyclic()], namespace=namespace)
    inside, release = threading.Event(), threading.Event()

    def blocking_is_leaf(x: object) -> bool:
        inside.set()
        assert release.wait(60)
        return False

    reader = threading.Thread(
        target=optree.tree_flatten, args=([1],), kwargs={'is_leaf': blocking_is_leaf}
    )
    reader.start()
    try:
        assert inside.wait(60)
        optree.unregister_pytree_node(Cyclic, namespace=namespace)
    finally:
        release.set()
        reader.join(60)
    assert not reader.is_alive()
    collected = weakref.ref(Cyclic)
    del Cyclic
    gc.collect()
    assert collected() is None
