"""Subinterpreters with their own GIL on CPython 3.12, 3.13 and 3.14, behind one small API, and
the child-process runner the concurrency tests share.

CPython exposes them differently in each version:

- 3.12: ``_xxsubinterpreters`` (``create(isolated=True)``, ``run_string`` raises on failure),
- 3.13: ``_interpreters`` (``create('isolated')``, ``exec`` returns an error object instead),
- 3.14: ``concurrent.interpreters`` (PEP 734; ``Interpreter.exec`` raises ``ExecutionFailed``).

Only the standard library is used: no backport package is needed on any of them.

This module imports nothing but the standard library, so that subinterpreters and child
processes can import it too.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TESTS_DIR = Path(__file__).resolve().parent

if sys.version_info >= (3, 14):
    from concurrent import interpreters as _pep734

    FLAVOUR = 'concurrent.interpreters'
if sys.version_info >= (3, 13):
    import _interpreters

    if sys.version_info < (3, 14):
        FLAVOUR = '_interpreters'
elif sys.version_info >= (3, 12):
    import _xxsubinterpreters

    FLAVOUR = '_xxsubinterpreters'
else:
    FLAVOUR = None

SKIP_REASON = 'subinterpreters with their own GIL need CPython 3.12+'


class SubinterpreterError(RuntimeError):
    """Code run in a subinterpreter raised; the message carries its traceback."""


class Subinterpreter:
    """An isolated subinterpreter (own GIL, own obmalloc) whose ``sys.path`` is the creator's.

    A subinterpreter computes its own ``sys.path`` from the process configuration, which may put
    the work tree (whose ``optree/`` has no compiled ``_C``) first or miss the test directory:
    it gets the path of the interpreter that created it instead. Use one instance from one thread
    at a time; different instances may run at once in different threads.
    """

    def __init__(self, path: list[str] | None = None, *, isolated: bool = True) -> None:
        self._flavour = FLAVOUR
        if not isolated:
            # Shares the main interpreter's GIL and allocator (CPython's "legacy" config).
            self._flavour = '_interpreters' if sys.version_info >= (3, 13) else FLAVOUR
        if self._flavour == 'concurrent.interpreters':
            self._interpreter = _pep734.create()
            self.id = int(self._interpreter.id)
        elif self._flavour == '_interpreters':
            self.id = int(_interpreters.create('isolated' if isolated else 'legacy'))
        elif self._flavour == '_xxsubinterpreters':
            self._handle = _xxsubinterpreters.create(isolated=isolated)
            self.id = int(self._handle)
        else:
            raise RuntimeError(SKIP_REASON)
        self.closed = False
        search_path = list(sys.path if path is None else path)
        self.exec(f'import sys\nsys.path[:] = {search_path!r}')

    def exec(self, code: str) -> None:
        """Run ``code`` in the subinterpreter's ``__main__``; raise if it raised."""
        code = textwrap.dedent(code)
        if self._flavour == 'concurrent.interpreters':
            try:
                self._interpreter.exec(code)
            except _pep734.ExecutionFailed as ex:
                raise SubinterpreterError(str(ex)) from None
        elif self._flavour == '_interpreters':
            error = _interpreters.exec(self.id, code)
            if error is not None:
                raise SubinterpreterError(getattr(error, 'errdisplay', None) or str(error))
        else:
            try:
                _xxsubinterpreters.run_string(self._handle, code)
            except _xxsubinterpreters.RunFailedError as ex:
                raise SubinterpreterError(str(ex)) from None

    def call(self, code: str, name: str = 'result') -> Any:
        """Run ``code``, then return the value it left in ``name`` (pickled across)."""
        fd, path = tempfile.mkstemp(prefix='optree-subinterpreter-', suffix='.pickle')
        os.close(fd)
        try:
            self.exec(
                textwrap.dedent(code)
                + f'\nimport pickle as _pickle\nwith open({path!r}, "wb") as _file:\n'
                + f'    _pickle.dump({name}, _file)\ndel _pickle, _file, {name}\n'
            )
            with open(path, 'rb') as file:
                return pickle.load(file)
        finally:
            os.unlink(path)

    def close(self) -> None:
        """Destroy the subinterpreter (it finalizes, which runs optree's exit hook)."""
        if self.closed:
            return
        self.closed = True
        if self._flavour == 'concurrent.interpreters':
            self._interpreter.close()
        elif self._flavour == '_interpreters':
            _interpreters.destroy(self.id)
        else:
            _xxsubinterpreters.destroy(self._handle)

    def __enter__(self) -> Subinterpreter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# ------------------------------------------------------------------------ child processes

FIGURES_PREFIX = 'FIGURES '


def report_figures(**figures: Any) -> None:
    """Print measured figures from a child process for the parent test to show."""
    print(FIGURES_PREFIX + json.dumps(figures), flush=True)


def read_tokens(fd: int) -> set[str]:
    """Every whitespace-separated token written so far to the pipe ``fd`` (without blocking):
    the scenarios' sentinels write one when their owner is freed."""
    os.set_blocking(fd, False)
    data = b''
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    return set(data.decode().split())


class ChildResult:
    def __init__(self, completed: subprocess.CompletedProcess[str]) -> None:
        self.returncode = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr
        self.figures: dict[str, Any] = {}
        for line in self.stdout.splitlines():
            if line.startswith(FIGURES_PREFIX):
                self.figures.update(json.loads(line[len(FIGURES_PREFIX) :]))

    def describe(self) -> str:
        return (
            f'exit code {self.returncode}\n--- stdout ---\n{self.stdout[-4000:]}\n'
            f'--- stderr ---\n{self.stderr[-8000:]}'
        )


def assert_passed(result: ChildResult, *, ignore: re.Pattern[str] | None = None) -> None:
    """The child exited with status 0 and printed no traceback (after removing what ``ignore``
    matches from its stderr)."""
    assert result.returncode == 0, result.describe()
    stderr = result.stderr if ignore is None else ignore.sub('', result.stderr)
    assert 'Traceback' not in stderr, result.describe()


def show_figures(
    capsys: Any, name: str, figures: dict[str, Any], *, via: str | None = None
) -> None:
    """Print a child's measured figures past pytest's capture (``capsys``), with the Python
    version and, for subinterpreter tests, the interface used (``via``)."""
    where = sys.version.split()[0] + (f' via {via}' if via else '')
    with capsys.disabled():
        print(f'\n[{name} on {where}] {figures}')


THREAD_TIMEOUT = 120.0  # seconds a scenario waits for its threads


def run_threads(targets: list[Any], timeout: float = THREAD_TIMEOUT) -> None:
    """Run each callable in its own daemon thread; re-raise the first failure; fail on a hang."""
    errors: list[str] = []

    def guarded(target: Any) -> None:
        try:
            target()
        except BaseException:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=guarded, args=(t,), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    hung = sum(thread.is_alive() for thread in threads)
    assert not errors, f'{len(errors)} thread(s) failed; first:\n{errors[0]}'
    assert hung == 0, f'{hung} thread(s) still running after {timeout} s (deadlock?)'


def run_python(
    code: str,
    *,
    timeout: float,
    cwd: str | os.PathLike[str] | None = None,
    options: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> ChildResult:
    """Run ``code`` in a fresh ``python -I`` (plus ``options``) with this process's ``sys.path``.

    The child is isolated (no user site, no PYTHON* variables, no cwd on the path) and starts
    away from the work tree, so it imports the installed optree; a crash, a hang past
    ``timeout`` (``subprocess.TimeoutExpired``) or a failure stays in the child. ``env``
    replaces the environment (default: this process's).
    """
    prelude = f'import sys\nsys.path[:] = {sys.path!r}\n'
    command = [sys.executable, '-I', '-X', 'faulthandler', *options]
    completed = subprocess.run(
        [*command, '-c', prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd if cwd is not None else tempfile.gettempdir(),
        env=env,
    )
    return ChildResult(completed)


def run_scenario(module: str, scenario: str, *, timeout: float, **kwargs: Any) -> ChildResult:
    """Run ``module.scenario(**kwargs)`` (a module of the tests directory) in a child process."""
    # A hang dumps every thread's stack and exits before the parent gives up on the child.
    watchdog = (
        'import faulthandler\n'
        f'faulthandler.dump_traceback_later({max(1.0, timeout - 10)}, exit=True)\n'
    )
    return run_python(
        watchdog + f'import {module}\n{module}.{scenario}(**{kwargs!r})\n',
        timeout=timeout,
    )
