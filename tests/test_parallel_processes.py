"""optree.parallel in child processes (``harness/parallel_scenarios.py``): dask.distributed's
executor, the default pools at interpreter exit, a receiving process that lacks a registration,
and malformed packed data. A crash or a hang fails one test, not the session; dask's imports stay
out of the test process (on free-threaded builds they may bring the GIL back).
"""

from __future__ import annotations

import functools
import os
import pickle
import re
import sys
import sysconfig
from pathlib import Path

import pytest

import optree
import optree.parallel

from harness import integration_support, parallel_support
from harness.parallel_support import Unregistered
from harness.subinterpreters import SKIP_REASON, assert_passed, run_python, run_scenario

TIMEOUT = 600  # seconds; a LocalCluster starts in a few seconds on 2 idle cores
FREE_THREADED = bool(sysconfig.get_config_var('Py_GIL_DISABLED'))


# tree_map cancels the chunks still pending after a failing one; dask's client may log such a
# cancellation that races its own bookkeeping (a tornado callback error ending in
# FutureCancelledError, or InvalidStateError when its executor sets the result of a future
# already cancelled; both seen under AddressSanitizer's slowdown): dask's noise, not a failure.
DASK_CANCELLATION_LOG = re.compile(
    r'^.*tornado\.application - ERROR - Exception in callback.*\n(?:.*\n)*?'
    r'(?:distributed\.client\.FutureCancelledError: '
    r'|concurrent\.futures\._base\.InvalidStateError: CANCELLED: ).*(?:\n|$)',
    re.MULTILINE,
)


def test_tree_map_on_a_dask_distributed_executor(capsys: pytest.CaptureFixture[str]) -> None:
    integration_support.require('distributed')
    result = run_scenario('harness.parallel_scenarios', 'scenario_dask', timeout=TIMEOUT, workers=2)
    assert_passed(result, ignore=DASK_CANCELLATION_LOG)
    assert result.figures['calls'] > 0
    assert result.figures['zoo_maps'] > 250  # of 50 zoo trees x 6 variants
    with capsys.disabled():
        print(f'\n[dask on {sys.version.split()[0]}] {result.figures}')


def test_default_pools_shut_down_at_interpreter_exit() -> None:
    result = run_scenario(
        'harness.parallel_scenarios', 'scenario_pools_shut_down_at_exit', timeout=TIMEOUT
    )
    assert_passed(result)
    assert result.stderr.strip() == '', result.describe()
    expected = ['ThreadPoolExecutor']
    if not FREE_THREADED and sys.version_info >= (3, 14):
        expected = ['InterpreterPoolExecutor', 'ThreadPoolExecutor']
    assert f'shutdown at exit: {expected}' in result.stdout, result.describe()
    assert len(result.figures['pools']) == len(expected)


def test_tree_map_with_the_default_pools_in_exit_hooks() -> None:
    result = run_scenario(
        'harness.parallel_scenarios', 'scenario_tree_map_in_an_exit_hook', timeout=TIMEOUT
    )
    assert_passed(result)
    assert result.stderr.strip() == '', result.describe()
    for when in ('before', 'after'):
        assert f'mapped at exit ({when} the pools shut down)' in result.stdout, result.describe()


def test_pack_of_a_tree_that_changes_while_pack_classifies_it() -> None:
    result = run_scenario(
        'harness.parallel_scenarios', 'scenario_tree_changed_while_pack_classifies', timeout=120
    )
    assert_passed(result)
    assert result.stdout.count('outcome:') == 6, result.describe()


def test_pack_of_a_tree_emptied_by_a_collection_while_pack_walks_it() -> None:
    result = run_scenario(
        'harness.parallel_scenarios', 'scenario_garbage_collected_while_pack_walks', timeout=120
    )
    assert_passed(result)
    assert result.stdout.count('outcome:') == 10, result.describe()


@functools.cache
def _isolated_subinterpreters_survive_threads() -> bool:
    """Whether this CPython exits cleanly after an isolated (own GIL) subinterpreter ran a thread
    and imported hashlib, with no optree involved: CPython 3.12.1 aborts at exit then
    ("double free or corruption", "free(): invalid pointer"), 3.13+ does not. The probe runs
    without the sanitizer runtimes of ``make sanitize``: it tests CPython, not this package,
    and its crash would read as a sanitizer report."""
    code = (
        'from harness.subinterpreters import Subinterpreter\n'
        'with Subinterpreter(isolated=True) as sub:\n'
        '    sub.exec("import hashlib, threading\\n'
        't = threading.Thread(target=print)\\nt.start()\\nt.join()\\n")\n'
    )
    sanitizer_variables = ('LD_PRELOAD', 'ASAN_OPTIONS', 'UBSAN_OPTIONS')
    env = {name: value for name, value in os.environ.items() if name not in sanitizer_variables}
    return run_python(code, timeout=120, env=env).returncode == 0


@pytest.mark.skipif(sys.version_info < (3, 12), reason=SKIP_REASON)
@pytest.mark.parametrize('isolated', [True, False], ids=['own-gil', 'shared-gil'])
def test_default_pools_in_subinterpreters_shut_down_when_they_close(isolated: bool) -> None:
    if isolated and not _isolated_subinterpreters_survive_threads():
        pytest.skip(
            f'CPython {sys.version.split()[0]} itself aborts at exit after an isolated '
            'subinterpreter started a thread or imported hashlib (no optree involved)'
        )
    result = run_scenario(
        'harness.parallel_scenarios',
        'scenario_default_pools_in_subinterpreters',
        timeout=TIMEOUT,
        isolated=isolated,
    )
    assert_passed(result)
    assert result.figures['rounds'] == 3


@pytest.mark.parametrize('register', [False, True])
def test_a_receiving_process_needs_the_registration(tmp_path: Path, register: bool) -> None:
    parallel_support.register_unregistered()
    try:
        packed = optree.parallel.pack({'u': Unregistered(1, [2.5])}, namespace='support')
    finally:
        optree.unregister_pytree_node(Unregistered, namespace='support')
    path = tmp_path / 'packed.pickle'
    path.write_bytes(pickle.dumps(packed))
    result = run_scenario(
        'harness.parallel_scenarios',
        'scenario_receive_in_this_process',
        timeout=TIMEOUT,
        path=str(path),
        register=register,
    )
    assert_passed(result)
    if register:
        assert "unpacked: {'u': Unregistered(1, [2.5])}" in result.stdout, result.describe()
    else:
        assert (
            'UnpackError: optree.parallel.unpack: the custom node type '
            'harness.parallel_support.Unregistered is not registered in this interpreter '
            "(looked up in namespace 'support')"
        ) in result.stdout, result.describe()


def test_malformed_packed_data_raises_and_never_crashes(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_scenario(
        'harness.parallel_scenarios', 'scenario_malformed_packed_data', timeout=TIMEOUT, rounds=3000
    )
    assert_passed(result)
    with capsys.disabled():
        print(f'\n[malformed packed data] {result.figures}')
