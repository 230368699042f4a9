"""The registry is sharded per interpreter: subinterpreters with their own GIL run optree at
once, each with its own registry, which disappears (releasing what it held) when the
interpreter is destroyed; nothing one interpreter does reaches another.

Subinterpreters with their own GIL exist from CPython 3.12 (``_xxsubinterpreters``), 3.13
(``_interpreters``) and 3.14 (``concurrent.interpreters``); ``harness/subinterpreters.py`` hides
the differences. On 3.11 these tests are skipped. Each scenario
(``harness/interpreter_scenarios.py``) runs in a child process under a timeout, so a crash or a
deadlock fails one test, not the session.
"""

from __future__ import annotations

import os
import sys
import sysconfig

import pytest

from harness import subinterpreters
from harness.subinterpreters import assert_passed, run_python, run_scenario, show_figures

pytestmark = pytest.mark.skipif(subinterpreters.FLAVOUR is None, reason=subinterpreters.SKIP_REASON)

SCENARIO_TIMEOUT = 300  # seconds; the slowest scenario takes a few seconds on 2 loaded cores


def test_eight_interpreters_at_once_agree_with_the_main_interpreter(capsys):
    result = run_scenario(
        'harness.interpreter_scenarios',
        'scenario_concurrent_interpreters',
        timeout=SCENARIO_TIMEOUT,
        count=8,
        rounds=20,
    )
    assert_passed(result)
    assert result.figures['interpreters'] == 8
    show_figures(capsys, 'concurrent interpreters', result.figures, via=subinterpreters.FLAVOUR)


def test_registrations_and_dict_order_stay_in_their_interpreter():
    assert_passed(
        run_scenario(
            'harness.interpreter_scenarios',
            'scenario_registrations_stay_in_their_interpreter',
            timeout=SCENARIO_TIMEOUT,
        )
    )


def test_subinterpreters_leave_the_main_registry_alone(capsys):
    result = run_scenario(
        'harness.interpreter_scenarios',
        'scenario_subinterpreters_leave_the_main_registry_alone',
        timeout=SCENARIO_TIMEOUT,
        count=4,
        rounds=50,
    )
    assert_passed(result)
    # The main interpreter checked its registry while the subinterpreters churned theirs.
    assert result.figures['main_checks_during_churn'] >= 1
    show_figures(
        capsys, 'main registry checks during churn', result.figures, via=subinterpreters.FLAVOUR
    )


def test_destroying_an_interpreter_drops_its_shard_and_releases_its_registrations():
    assert_passed(
        run_scenario(
            'harness.interpreter_scenarios',
            'scenario_destroy_releases_shard_and_registrations',
            timeout=SCENARIO_TIMEOUT,
        )
    )


def test_process_exits_cleanly_with_live_subinterpreters():
    # The main interpreter finishes while subinterpreters that imported optree, registered
    # types, hold treespecs and ordered dicts are alive (one of them also ran in a thread).
    code = """
    import sys
    import threading
    import optree
    from harness.subinterpreters import Subinterpreter

    setup = '''
    from harness import interpreter_scenarios as s
    s.register_everything()
    spec = s.optree.tree_structure([s.Box(1), {'b': 2, 'a': 3}])
    assert s.optree.tree_leaves({'b': 2, 'a': 3}) == [2, 3]
    '''
    alive = [Subinterpreter() for _ in range(3)]
    for interpreter in alive[:2]:
        interpreter.exec(setup)
    if sys.version_info >= (3, 13):
        worker = threading.Thread(target=alive[2].exec, args=(setup,))
        worker.start()
        worker.join()
    else:
        # CPython 3.12 hangs at exit (in the subinterpreter's threading._shutdown) when a live
        # subinterpreter imported threading on a thread other than its creator's, with or
        # without optree.
        alive[2].exec(setup)
    print(optree.tree_leaves([1, (2, 3)]))
    """
    result = run_python(code, timeout=SCENARIO_TIMEOUT)
    assert result.returncode == 0, result.describe()
    assert result.stdout.strip() == '[1, 2, 3]', result.describe()
    # CPython 3.14 itself warns about interpreters left open at exit; nothing else may appear.
    stderr = [
        line
        for line in result.stderr.splitlines()
        if 'RuntimeWarning: remaining subinterpreters' not in line
    ]
    assert stderr == [], result.describe()


@pytest.mark.skipif(sys.version_info < (3, 14), reason='InterpreterPoolExecutor is new in 3.14')
def test_interpreter_pool_executor_maps_over_interpreters(capsys):
    result = run_scenario(
        'harness.interpreter_scenarios',
        'scenario_interpreter_pool',
        timeout=SCENARIO_TIMEOUT,
        workers=8,
    )
    assert_passed(result)
    assert result.figures['distinct_interpreters'] >= 2
    show_figures(capsys, 'InterpreterPoolExecutor', result.figures, via=subinterpreters.FLAVOUR)


# Create, import optree, register (globally and in a namespace), flatten, unflatten, destroy:
# 1,000 times. Live shards must return to the baseline exactly. Memory: see the scenario.
CYCLES = 1000


# Issue 5 asks for this on the GIL builds 3.12-3.14. On free-threaded 3.14t, CPython itself
# keeps about 7.8 MB per destroyed interpreter that imported only the standard library
# (measured over 40 cycles), so 1,000 cycles would need about 9 GB and measure CPython.
@pytest.mark.skipif(
    bool(sysconfig.get_config_var('Py_GIL_DISABLED')),
    reason='free-threaded CPython 3.14t retains ~8 MB per destroyed interpreter without optree',
)
def test_thousand_interpreter_cycles_leave_no_shards_and_bounded_memory(capsys):
    result = run_scenario(
        'harness.interpreter_scenarios',
        'scenario_interpreter_cycles',
        timeout=1800,
        cycles=CYCLES,
        warmup=20,
    )
    show_figures(
        capsys, f'{CYCLES} interpreter cycles', result.figures, via=subinterpreters.FLAVOUR
    )
    assert_passed(result)


def test_destroying_an_interpreter_destroys_its_optree_module():
    # ``python -v`` reports every module object CPython deallocates ("# destroy NAME"). The
    # extension module must die with its interpreter: Cython's module-state mode keeps a
    # reference to it that optree hands back at interpreter exit.
    code = """
    import sys
    from harness.subinterpreters import Subinterpreter

    with Subinterpreter() as interpreter:
        interpreter.exec('import optree')
    print('optree-test: interpreter closed', file=sys.stderr, flush=True)
    """
    result = run_python(code, timeout=SCENARIO_TIMEOUT, options=['-v'])
    assert result.returncode == 0, result.describe()
    while_alive, marker, _ = result.stderr.partition('optree-test: interpreter closed\n')
    assert marker, result.describe()
    assert '# destroy optree._C\n' in while_alive, result.describe()


# CPython 3.12 and 3.13 never give a destroyed isolated interpreter's object arenas back, and
# free-threaded 3.14t keeps its memory too (measured per stdlib-only interpreter: 4.3 MiB on 3.13,
# 9.4 MiB on 3.14t), so RSS there measures CPython; the test above covers those versions.
@pytest.mark.skipif(
    sys.version_info < (3, 14) or bool(sysconfig.get_config_var('Py_GIL_DISABLED')),
    reason="only CPython 3.14+ with the GIL frees a destroyed isolated interpreter's arenas",
)
# Under AddressSanitizer (make sanitize preloads it) freed memory waits in ASan's quarantine and
# PYTHONMALLOC=malloc bypasses the arenas, so RSS there measures the sanitizer (303 KiB/cycle).
@pytest.mark.skipif(
    'libasan' in os.environ.get('LD_PRELOAD', ''),
    reason="RSS is not CPython's under AddressSanitizer (quarantine, PYTHONMALLOC=malloc)",
)
def test_isolated_interpreter_cycles_give_their_memory_back(capsys):
    cycles = 200
    result = run_scenario(
        'harness.interpreter_scenarios',
        'scenario_isolated_interpreter_cycles',
        timeout=900,
        cycles=cycles,
        warmup=10,
    )
    show_figures(
        capsys, f'{cycles} isolated interpreter cycles', result.figures, via=subinterpreters.FLAVOUR
    )
    assert_passed(result)
