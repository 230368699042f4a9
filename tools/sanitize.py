#!/usr/bin/env python3
"""Build the extension with AddressSanitizer + UndefinedBehaviorSanitizer and run the
concurrency and subinterpreter tests under it, on each interpreter given.

Usage (``make sanitize`` runs it)::

    tools/sanitize.py [--build-req REQ]... ENV... [-- PYTEST_ARGS...]

ENV is a tox-style name (``py312``, ``py314``, ``py314t``); its interpreter is found like
``make test`` finds it (``tools/pythons.py``). For each one, a venv ``build/sanitize/<ENV>/venv``
gets the build requirements and our package built by meson with
``-Db_sanitize=address,undefined -Db_lundef=false`` (the sanitizer runtimes are not linked
into the extension: CPython itself is not instrumented, so they are preloaded instead).

The tests run against the reference optree 0.20.0 venv of that interpreter
(``tools/reference_venv.py``) with ``LD_PRELOAD`` of libasan and libubsan,
``PYTHONMALLOC=malloc`` (so that Python objects live in ASan-checked memory; not on
free-threaded builds, which only run on mimalloc),
``ASAN_OPTIONS=detect_leaks=0`` (an uninstrumented CPython does not free everything at exit)
and ``UBSAN_OPTIONS=halt_on_error=1``. ASan writes its reports to files (``log_path``), so a
report from a child process the tests start counts even when the test swallows the child's
output; UBSan halts the process that hit it. An env fails when pytest fails, any ASan report
file was written, or pytest's output shows a sanitizer report; the reports are printed. The
tests (``SANITIZED_TESTS``) are the concurrency tests (``tests/concurrent/``: subinterpreters,
free threading, the collector under threads), ``tests/test_gc.py``, optree.parallel's
(``tests/test_parallel*.py``: pack / unpack, malformed packed data), and the tests of the code
that builds and reads memory from untrusted input, deep structures or objects made in the core:
``tests/test_pickle.py``, ``tests/test_pickle_malformed.py``, ``tests/test_flatten_hostile.py``,
``tests/test_flatten_fast_paths.py``, ``tests/test_treespec.py``, ``tests/test_treespec_deep.py``,
``tests/test_map.py``, ``tests/test_accessors.py``, ``tests/test_dataclasses.py``,
``tests/test_functools_pytree.py``, ``tests/test_registry.py`` (registration policy in the core)
and two single tests (interpreter-dependent names, the namedtuple / structseq helpers).

A missing interpreter is skipped with a message (an error under ``CI=true`` except for 3.12,
which has no source on the Debian mirror). Exit status 0 only when every env that ran passed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pythons
from _env import in_ci

REPO = Path(__file__).resolve().parent.parent
# The tests run under the sanitizers: files (and single tests) of tests/.
SANITIZED_TESTS = (
    # Threads, subinterpreters, the garbage collector.
    'concurrent/',
    'test_gc.py',
    # optree.parallel: pack / unpack, malformed packed data, pools in children.
    'test_parallel.py',
    'test_parallel_processes.py',
    # Code that builds and reads memory from untrusted input or deep structures.
    'test_pickle.py',
    'test_pickle_malformed.py',
    'test_flatten_hostile.py',
    'test_flatten_fast_paths.py',
    'test_treespec.py',
    'test_treespec_deep.py',
    'test_map.py',
    # Objects built in the core: path entries, accessors, dataclass nodes, partials.
    'test_accessors.py',
    'test_dataclasses.py',
    'test_functools_pytree.py',
    'test_api_surface.py::test_version_dependent_names',
    # Registration policy in the core (the warning's undo), the registry's introspection.
    'test_registry.py',
    'test_typing.py::test_namedtuple_and_structseq_helpers',
)
MESON_ARGS = ('-Db_sanitize=address,undefined', '-Db_lundef=false')
NOT_REQUIRED_IN_CI = {'py312'}
# Lines that only a sanitizer report prints.
SANITIZER_MARKERS = ('runtime error: ', 'ERROR: AddressSanitizer', 'ERROR: LeakSanitizer')


def log(msg: str) -> None:
    print(f'[sanitize] {msg}', file=sys.stderr, flush=True)


def runtime_library(name: str) -> str:
    """Path of a sanitizer runtime of the compiler meson uses (``c++``)."""
    compiler = os.environ.get('CXX', 'c++')
    path = subprocess.run(
        [compiler, f'-print-file-name={name}'], check=True, capture_output=True, text=True
    ).stdout.strip()
    if not os.path.isabs(path) or not os.path.exists(path):
        raise SystemExit(f'error: {compiler} has no {name} (install its sanitizer runtime)')
    return os.path.realpath(path)


def test_files() -> list[str]:
    """The pytest arguments selecting :data:`SANITIZED_TESTS` (paths under ``tests/``); a file
    that does not exist is an error, so that a renamed test file is not silently dropped."""
    selected = []
    for test in SANITIZED_TESTS:
        path = REPO / 'tests' / test.split('::')[0]
        if not path.exists():
            raise SystemExit(f'error: tools/sanitize.py selects {test}, which does not exist')
        selected.append(str(REPO / 'tests' / test))
    return selected


def run(cmd: list[str], **kwargs) -> None:
    log('$ ' + ' '.join(cmd))
    subprocess.run(cmd, check=True, **kwargs)


def build(env: str, python: str, build_reqs: list[str], workdir: Path) -> Path:
    venv = workdir / 'venv'
    venv_python = venv / 'bin' / 'python'
    if not venv_python.exists():
        run([python, '-m', 'venv', str(venv)])
    pip = [str(venv_python), '-m', 'pip', 'install', '--quiet', '--disable-pip-version-check']
    stamp = venv / '.build-reqs'
    if not stamp.exists() or stamp.read_text() != '\n'.join(build_reqs):
        run([*pip, *build_reqs])
        stamp.write_text('\n'.join(build_reqs))
    start = time.monotonic()
    setup_args = [f'-Csetup-args={arg}' for arg in MESON_ARGS]
    run(
        [*pip, '--no-build-isolation', f'-Cbuild-dir={workdir / "build"}', *setup_args, '.[test]'],
        cwd=REPO,
    )
    log(f'{env}: sanitized build + install took {time.monotonic() - start:.0f} s')
    return venv_python


def run_tests(env: str, venv_python: Path, workdir: Path, pytest_args: list[str]) -> bool:
    reports = workdir / 'reports'
    shutil.rmtree(reports, ignore_errors=True)
    reports.mkdir(parents=True)
    bin_dir = str(venv_python.parent)
    # The reference optree 0.20.0 venv is made (or found) before the sanitizer runtimes are
    # preloaded: pip has no business running under them.
    reference = subprocess.run(
        [str(venv_python), str(REPO / 'tools' / 'reference_venv.py'), str(venv_python)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout.strip()
    env_vars = dict(
        os.environ,
        OPTREE_REFERENCE_PYTHON=reference,
        PATH=bin_dir + os.pathsep + os.environ.get('PATH', ''),
        LD_PRELOAD=' '.join([runtime_library('libasan.so'), runtime_library('libubsan.so')]),
        PYTHONFAULTHANDLER='1',
        ASAN_OPTIONS=f'detect_leaks=0:abort_on_error=0:log_path={reports / "asan"}',
        UBSAN_OPTIONS=f'halt_on_error=1:print_stacktrace=1:log_path={reports / "ubsan"}',
    )
    probe = 'import sysconfig; print(sysconfig.get_config_var("Py_GIL_DISABLED"))'
    free_threaded = (
        subprocess.run(
            [str(venv_python), '-c', probe],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        ).stdout.strip()
        == '1'
    )
    if not free_threaded:
        # Python objects from the system malloc, which ASan checks. A free-threaded build
        # refuses this (it needs mimalloc), so there ASan sees our own allocations only.
        env_vars['PYTHONMALLOC'] = 'malloc'
    files = test_files()
    cmd = [str(venv_python), '-m', 'pytest', '-p', 'no:cacheprovider', *files, *pytest_args]
    log(f'{env}: ' + ' '.join(cmd))
    start = time.monotonic()
    # Echo pytest's output and keep it: UBSan, preloaded next to ASan, ignores its log_path and
    # reports on stderr (it still halts the process: halt_on_error=1).
    report_lines: list[str] = []
    with subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env_vars,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors='replace',
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            if any(marker in line for marker in SANITIZER_MARKERS):
                report_lines.append(line)
    status = proc.returncode
    sys.stdout.flush()
    found = sorted(reports.iterdir())
    for report in found:
        print(f'----- sanitizer report {report.name}', file=sys.stderr)
        print(report.read_text(errors='replace'), file=sys.stderr)
    if report_lines:
        print('----- sanitizer reports in the pytest output:', file=sys.stderr)
        sys.stderr.writelines(report_lines)
    found += report_lines
    elapsed = time.monotonic() - start
    ok = status == 0 and not found
    log(
        f'{env}: pytest exit status {status}, {len(found)} sanitizer report(s), '
        f'{elapsed:.0f} s: {"PASSED" if ok else "FAILED"}'
    )
    return ok


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    pytest_args: list[str] = []
    if '--' in argv:
        at = argv.index('--')
        argv, pytest_args = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('envs', nargs='+', metavar='ENV')
    parser.add_argument('--build-req', action='append', default=[], metavar='REQ')
    args = parser.parse_args(argv)
    ci = in_ci()

    results: dict[str, str] = {}
    for env in args.envs:
        python = pythons.find(env)
        if python is None:
            how = pythons.HOW_TO_GET.get(env, 'pyenv')
            results[env] = 'MISSING' if ci and env not in NOT_REQUIRED_IN_CI else 'skipped'
            log(f'{env}: no interpreter ({how}): {results[env]}')
            continue
        workdir = REPO / 'build' / 'sanitize' / env
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            venv_python = build(env, python, args.build_req, workdir)
        except subprocess.CalledProcessError as exc:
            log(f'{env}: build failed: {exc}')
            results[env] = 'BUILD FAILED'
            continue
        results[env] = 'passed' if run_tests(env, venv_python, workdir, pytest_args) else 'FAILED'
    log('summary: ' + ', '.join(f'{env} {result}' for env, result in results.items()))
    return 0 if all(r in ('passed', 'skipped') for r in results.values()) else 1


if __name__ == '__main__':
    sys.exit(main())
