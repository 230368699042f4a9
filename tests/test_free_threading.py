"""Free-threaded CPython (3.14t): optree keeps the GIL off and stays consistent under races.

Each scenario (``free_threading_scenarios.py``) runs in a child process under a timeout, with
``faulthandler`` on, so a crash or a deadlock fails one test with the threads' stacks.
"""

from __future__ import annotations

import sys
import sysconfig

import pytest
from subinterpreters import run_scenario

pytestmark = pytest.mark.skipif(
    not sysconfig.get_config_var('Py_GIL_DISABLED'),
    reason='needs a free-threaded CPython build (3.14t); make test provisions one',
)


def _passes(result) -> None:
    assert result.returncode == 0, result.describe()
    assert 'Traceback' not in result.stderr, result.describe()


def _show(capsys: pytest.CaptureFixture[str], name: str, figures: dict) -> None:
    with capsys.disabled():
        print(f'\n[{name} on {sys.version.split()[0]}] {figures}')


def test_gil_stays_disabled_after_import_and_use():
    _passes(run_scenario('free_threading_scenarios', 'scenario_gil_stays_disabled', timeout=120))


@pytest.mark.parametrize(('readers', 'writers'), [(8, 2), (12, 4)])
def test_readers_and_writers_in_one_namespace(capsys, readers, writers):
    result = run_scenario(
        'free_threading_scenarios',
        'scenario_readers_and_writers',
        timeout=300,
        readers=readers,
        writers=writers,
        seconds=3.0,
        tree_size=200,
    )
    _passes(result)
    figures = result.figures
    assert figures['reader operations'] >= readers
    assert figures['register/unregister toggles'] >= 1
    assert figures['dict order toggles'] >= 1
    _show(capsys, f'{readers} readers + {writers} writers', figures)


def test_racing_registrations_in_one_namespace():
    _passes(
        run_scenario(
            'free_threading_scenarios',
            'scenario_racing_registrations',
            timeout=300,
            threads=8,
            rounds=200,
        )
    )


def test_pickling_races(capsys):
    result = run_scenario(
        'free_threading_scenarios',
        'scenario_pickling_races',
        timeout=300,
        threads=8,
        seconds=3.0,
        tree_size=100,
    )
    _passes(result)
    figures = result.figures
    assert figures['pickle round trips'] >= 1
    assert figures['states loaded'] + figures['states rejected'] >= 1
    assert figures['state changes'] >= 1
    _show(capsys, 'pickling races', figures)
