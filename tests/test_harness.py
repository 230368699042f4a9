"""Tests of the harness itself (tests/harness/reference.py), and of the plain tests' expected
values (tests/plain) against optree 0.20.0."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness import reference


def _ok(text, type_name='builtins.int', **extra):
    return {'ok': True, 'repr': text, 'type': type_name, 'warnings': [], **extra}


def _err(exc_type, message, stage='expr'):
    return {'ok': False, 'stage': stage, 'exc_type': exc_type, 'message': message, 'warnings': []}


def test_compare_outcomes_agreement_and_differences():
    assert reference.compare_outcomes(_ok('1'), _ok('1')) is None
    assert 'repr differs' in reference.compare_outcomes(_ok('1'), _ok('2'))
    assert 'type differs' in reference.compare_outcomes(_ok('1'), _ok('1', 'builtins.bool'))
    assert 'ours returned' in reference.compare_outcomes(_ok('1'), _err('ValueError', 'x'))
    assert 'exception type differs' in reference.compare_outcomes(
        _err('TypeError', 'x'),
        _err('ValueError', 'x'),
    )
    assert reference.compare_outcomes(_err('ValueError', 'x'), _err('ValueError', 'y')) is None
    assert 'message differs' in reference.compare_outcomes(
        _err('ValueError', 'x'),
        _err('ValueError', 'y'),
        check_message=True,
    )
    assert 'stage' in reference.compare_outcomes(
        _err('ValueError', 'x', 'setup'),
        _err('ValueError', 'x', 'expr'),
    )
    warned = {**_ok('1'), 'warnings': ['UserWarning']}
    assert 'warnings differ' in reference.compare_outcomes(warned, _ok('1'))


def test_normalize_hides_addresses():
    assert reference.normalize('<object at 0x7f00DEADbeef>') == '<object at 0x?>'
    assert reference.normalize('no address') == 'no address'


def test_local_evaluate_describes_results_and_errors():
    out = reference.evaluate('x = 41', 'x + 1')
    assert out['ok'] and out['repr'] == '42' and out['type'] == 'builtins.int'
    out = reference.evaluate('', '(1, "a")')
    assert out['parts'] == [
        {'repr': '1', 'type': 'builtins.int'},
        {'repr': "'a'", 'type': 'builtins.str'},
    ]
    out = reference.evaluate('', '1 / 0')
    assert not out['ok'] and out['exc_type'] == 'ZeroDivisionError' and out['stage'] == 'expr'
    out = reference.evaluate('raise KeyError(3)', '1')
    assert not out['ok'] and out['stage'] == 'setup'
    out = reference.evaluate('', 'a = 2\nresult = a * 3\n')
    assert out['repr'] == '6'
    out = reference.evaluate('import warnings', "warnings.warn('w', UserWarning)")
    assert out['warnings'] == ['UserWarning']
    # Each snippet gets a fresh namespace.
    reference.evaluate('leaked = 1', 'leaked')
    assert not reference.evaluate('', 'leaked')['ok']


def test_snippet_classes_pickle_by_reference():
    setup = 'class K:\n    pass\n'
    out = reference.evaluate(setup, 'type(pickle.loads(pickle.dumps(K()))) is K')
    assert out == {**out, 'ok': True, 'repr': 'True'}
    out = reference.evaluate('', 'pickle.loads(pickle.dumps(Point(1, 2)))')
    assert out['repr'] == 'Point(x=1, y=2)'


def test_find_reference_python_rejects_bad_explicit_setting(monkeypatch, tmp_path):
    monkeypatch.setenv(reference.ENV_VAR, str(tmp_path / 'no-such-python'))
    python, reason = reference.find_reference_python()
    assert python is None
    assert reference.ENV_VAR in reason


def test_find_reference_python_rejects_the_optree_under_test(monkeypatch):
    monkeypatch.setenv(reference.ENV_VAR, sys.executable)
    monkeypatch.delenv(reference.ALLOW_SAME_ENV_VAR, raising=False)
    python, reason = reference.find_reference_python()
    # Either our interpreter has no optree 0.20.0 visible in isolated mode, or it is the very
    # optree under test: both must be refused as a reference.
    assert python is None
    assert 'optree' in reason


def test_missing_reference_skips_locally_and_fails_under_ci(tmp_path):
    test_file = tmp_path / 'test_uses_reference.py'
    test_file.write_text(
        textwrap.dedent(
            """
            def test_needs_reference(differential):
                differential.check('', ['1'])
            """,
        ),
    )
    conftest = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'conftest.py')
    (tmp_path / 'conftest.py').write_text(open(conftest).read())
    (tmp_path / 'reference.py').write_text(open(reference.__file__).read())
    base_env = {k: v for k, v in os.environ.items() if k != 'CI'}
    base_env[reference.ENV_VAR] = str(tmp_path / 'missing-python')
    base_env['PYTHONPATH'] = os.pathsep.join(p or os.getcwd() for p in sys.path)
    cmd = [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-rs', str(test_file)]

    local = subprocess.run(
        cmd, capture_output=True, text=True, env=base_env, cwd=tmp_path, check=False
    )
    assert local.returncode == 0, local.stdout + local.stderr
    assert '1 skipped' in local.stdout and reference.ENV_VAR in local.stdout

    ci = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env={**base_env, 'CI': 'true'},
        cwd=tmp_path,
        check=False,
    )
    assert ci.returncode != 0, ci.stdout
    assert 'required under CI=true' in ci.stdout


def test_server_reports_reference_identity(reference_server):
    reference_server.evaluate('', '1')
    hello = reference_server.hello
    assert hello['version'] == reference.REFERENCE_VERSION
    assert hello['python'].startswith('{}.{}.'.format(*sys.version_info[:2]))


def test_server_batches_and_caches(reference_server):
    cases = [('', f'{i} * 2') for i in range(50)]
    results = reference_server.evaluate_many(cases)
    assert [r['repr'] for r in results] == [str(i * 2) for i in range(50)]
    assert reference_server.evaluate_many(cases[:3]) == results[:3]


def test_server_survives_a_crashing_snippet(reference_server):
    with pytest.raises(reference.ReferenceError_):
        reference_server.evaluate('', "__import__('os')._exit(3)")
    assert reference_server.evaluate('', '6 * 7')['repr'] == '42'


def test_isolated_evaluation_reports_crashes():
    (out,) = reference.evaluate_isolated([('', '1 + 1')])
    assert out['repr'] == '2'
    with pytest.raises(reference.ChildCrashed, match=r'signal|died'):
        reference.evaluate_isolated([('', "__import__('os').abort()")])


def test_plain_expected_values_hold_on_the_reference(reference_server, tmp_path):
    """The hand-written values of tests/plain are optree 0.20.0's: the same tests pass there."""
    tests = Path(__file__).resolve().parent
    site_packages = str(Path(pytest.__file__).resolve().parent.parent)
    completed = subprocess.run(
        [
            reference_server.python,
            '-I',
            str(tests / 'harness' / 'plain_on_reference.py'),
            site_packages,
            str(tests / 'plain'),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stdout[-6000:] + completed.stderr[-2000:]
    assert ' passed' in completed.stdout, completed.stdout
