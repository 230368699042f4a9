"""Free-threaded CPython (3.13t / 3.14t): optree keeps the GIL off and stays consistent under
races.

CPython re-enables the GIL, with a RuntimeWarning, when it imports an extension module that
does not declare free-threading support; ``PYTHON_GIL=0`` would hide that, so the import checks
run in a child process with ``PYTHON_GIL`` removed from its environment. Each race scenario
(``harness/free_threading_scenarios.py``) runs in a child process under a timeout, with
``faulthandler`` on, so a crash or a deadlock fails one test with the threads' stacks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
import threading

import pytest

import optree

from harness.subinterpreters import assert_passed, run_scenario, show_figures

pytestmark = pytest.mark.skipif(
    not sysconfig.get_config_var('Py_GIL_DISABLED'),
    reason='needs a free-threaded CPython build (e.g. 3.14t); make test provisions one',
)


def _run_child(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != 'PYTHON_GIL'}
    return subprocess.run(
        [sys.executable, '-X', 'faulthandler', '-W', 'error::RuntimeWarning', '-c', code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_gil_is_disabled_at_startup() -> None:
    # The premise of the next test: a bare interpreter of this build runs without the GIL.
    child = _run_child('import sys; print(sys._is_gil_enabled())')
    assert (child.returncode, child.stdout.strip(), child.stderr) == (0, 'False', '')


def test_importing_optree_keeps_the_gil_disabled() -> None:
    code = textwrap.dedent(
        f"""
        import sys
        sys.path[:] = {sys.path!r}
        import optree, optree._C
        leaves, spec = optree.tree_flatten({{'a': (1, 2), 'b': [3, None]}})
        assert optree.tree_unflatten(spec, leaves) == {{'a': (1, 2), 'b': [3, None]}}
        print(optree.__file__)
        print(sys._is_gil_enabled())
        """
    )
    child = _run_child(code)
    assert child.returncode == 0, child.stderr
    module_file, gil_enabled = child.stdout.split()
    assert module_file == optree.__file__
    assert gil_enabled == 'False'
    assert child.stderr == ''


def test_gil_still_disabled_in_this_process() -> None:
    # Everything the test session imported (optree included) left the GIL off.
    assert sys._is_gil_enabled() is False


def test_threads_flatten_and_rebuild_a_shared_tree() -> None:
    tree = {'x': [1, (2, 3), None], 'y': {'z': list(range(50))}}
    expected_leaves, expected_spec = optree.tree_flatten(tree)
    n_threads = 8
    barrier = threading.Barrier(n_threads)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait(timeout=60)
            for _ in range(200):
                leaves, spec = optree.tree_flatten(tree)
                assert leaves == expected_leaves
                assert spec == expected_spec
                assert optree.tree_unflatten(spec, leaves) == tree
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), 'a worker thread hung'
    assert failures == []


# ---------------------------------------------------------------------------------------------
# Races (in child processes)
# ---------------------------------------------------------------------------------------------


def test_gil_stays_disabled_after_import_and_use():
    assert_passed(
        run_scenario('harness.free_threading_scenarios', 'scenario_gil_stays_disabled', timeout=120)
    )


@pytest.mark.parametrize(('readers', 'writers'), [(8, 2), (12, 4)])
def test_readers_and_writers_in_one_namespace(capsys, readers, writers):
    result = run_scenario(
        'harness.free_threading_scenarios',
        'scenario_readers_and_writers',
        timeout=300,
        readers=readers,
        writers=writers,
        seconds=3.0,
        tree_size=200,
    )
    assert_passed(result)
    figures = result.figures
    assert figures['reader operations'] >= readers
    assert figures['register/unregister toggles'] >= 1
    assert figures['dict order toggles'] >= 1
    show_figures(capsys, f'{readers} readers + {writers} writers', figures)


def test_racing_registrations_in_one_namespace():
    assert_passed(
        run_scenario(
            'harness.free_threading_scenarios',
            'scenario_racing_registrations',
            timeout=300,
            threads=8,
            rounds=200,
        )
    )


def test_pickling_races(capsys):
    result = run_scenario(
        'harness.free_threading_scenarios',
        'scenario_pickling_races',
        timeout=300,
        threads=8,
        seconds=3.0,
        tree_size=100,
    )
    assert_passed(result)
    figures = result.figures
    assert figures['pickle round trips'] >= 1
    assert figures['states loaded'] + figures['states rejected'] >= 1
    assert figures['state changes'] >= 1
    show_figures(capsys, 'pickling races', figures)
