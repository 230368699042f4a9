"""Differential-testing harness: evaluate source snippets with two optree implementations.

The module has two roles:

* Imported by the test suite (``from harness import reference``), it evaluates snippets
  in-process with *our* ``optree`` (:func:`evaluate`) and talks to a persistent reference server
  (:class:`ReferenceServer`).
* Run as a script by the reference interpreter (``python -I -u reference.py --serve``), it is that
  server: it reads JSON requests from stdin, one per line, evaluates every snippet with the
  reference ``optree`` (0.20.0) and writes one JSON response line per request.

Protocol (one JSON object per line):

* request:  ``{"cases": [[setup, expr], ...]}``
* response: ``{"results": [outcome, ...]}`` where each outcome is the dict made by :func:`evaluate`.
* on start the server writes ``{"hello": {...}}`` describing itself (optree version and file,
  Python version) before it reads anything.

A snippet is a pair of source strings.  ``setup`` is executed (after :data:`PRELUDE`) in a fresh
module namespace registered in ``sys.modules`` as :data:`SNIPPET_MODULE` (so classes defined there
can be pickled by reference).  ``expr`` is evaluated there; if it is not an expression it is
executed as statements and the value bound to ``result`` is taken.

Only the standard library is imported at module level: ``optree`` is imported lazily so that the
same file serves both implementations.
"""

from __future__ import annotations

import functools
import json
import os
import re
import select
import subprocess
import sys
import tempfile
import types
import warnings
from typing import Any

REFERENCE_VERSION = '0.20.0'
SNIPPET_MODULE = '_optree_snippet'
PRELUDE_MODULE = '_optree_prelude'
ENV_VAR = 'OPTREE_REFERENCE_PYTHON'
# Set to 1 to run the suite with the reference on both sides (a self-test of the harness).
ALLOW_SAME_ENV_VAR = 'OPTREE_TESTS_ALLOW_SAME_OPTREE'
FALLBACK_REFERENCE_PYTHON = '/opt/optree-ref/bin/python'
SERVER_TIMEOUT = 120.0  # seconds for one batch; generous, never asserted

# Executed once per process on both sides; its names are copied into every snippet namespace.
PRELUDE = """\
import collections
import copy
import functools
import itertools
import math
import operator
import os
import pickle
import sys
import time
import typing
from collections import OrderedDict, defaultdict, deque, namedtuple

import optree
from optree import PyTreeKind, PyTreeSpec

Point = namedtuple('Point', ['x', 'y'])
Triple = namedtuple('Triple', 'a b c')
Empty = namedtuple('Empty', [])


class Pair(typing.NamedTuple):
    first: typing.Any
    second: typing.Any = None


def _leaves_and_spec(tree, **kwargs):
    leaves, spec = optree.tree_flatten(tree, **kwargs)
    return leaves, spec


def _rebuild(tree, **kwargs):
    leaves, spec = optree.tree_flatten(tree, **kwargs)
    rebuilt = optree.tree_unflatten(spec, leaves)
    return rebuilt, type(rebuilt)


def _pickle_all(obj):
    return [pickle.loads(pickle.dumps(obj, protocol=p)) for p in range(pickle.HIGHEST_PROTOCOL + 1)]
"""

_ADDRESS = re.compile(r'0x[0-9a-fA-F]+')


def normalize(text: str) -> str:
    """Hide memory addresses, which differ between processes."""
    return _ADDRESS.sub('0x?', text)


def _type_name(obj: Any) -> str:
    cls = type(obj)
    return f'{cls.__module__}.{cls.__qualname__}'


def _safe_repr(obj: Any) -> str:
    try:
        return normalize(repr(obj))
    except BaseException as ex:
        return f'<repr raised {type(ex).__name__}: {normalize(str(ex))}>'


def describe(obj: Any) -> dict[str, Any]:
    """JSON-able description of a result: its repr and type (and those of a tuple's parts)."""
    out: dict[str, Any] = {'ok': True, 'repr': _safe_repr(obj), 'type': _type_name(obj)}
    if type(obj) is tuple and len(obj) <= 16:
        out['parts'] = [{'repr': _safe_repr(part), 'type': _type_name(part)} for part in obj]
    return out


def describe_exception(ex: BaseException, stage: str) -> dict[str, Any]:
    try:
        message = str(ex)
    except BaseException:
        message = '<str() raised>'
    return {
        'ok': False,
        'stage': stage,
        'exc_type': type(ex).__name__,
        'exc_mro': [cls.__name__ for cls in type(ex).__mro__],
        'message': normalize(message),
    }


_PRELUDE_NAMES: dict[str, Any] | None = None


def _prelude_names() -> dict[str, Any]:
    """Run :data:`PRELUDE` once per process in its own (picklable-by-reference) module."""
    global _PRELUDE_NAMES
    if _PRELUDE_NAMES is None:
        module = types.ModuleType(PRELUDE_MODULE)
        sys.modules[PRELUDE_MODULE] = module
        exec(compile(PRELUDE, '<prelude>', 'exec'), module.__dict__)
        _PRELUDE_NAMES = {k: v for k, v in module.__dict__.items() if not k.startswith('__')}
    return _PRELUDE_NAMES


@functools.lru_cache(maxsize=4096)
def _compile(source: str, filename: str, mode: str) -> types.CodeType:
    return compile(source, filename, mode)


def evaluate(setup: str, expr: str) -> dict[str, Any]:
    """Evaluate one snippet with whichever ``optree`` this interpreter imports.

    Warnings raised while evaluating ``expr`` are recorded (category names) in the outcome.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        outcome = _evaluate(setup, expr)
    outcome['warnings'] = sorted({w.category.__name__ for w in caught})
    return outcome


def _evaluate(setup: str, expr: str) -> dict[str, Any]:
    module = types.ModuleType(SNIPPET_MODULE)
    namespace = module.__dict__
    sys.modules[SNIPPET_MODULE] = module
    try:
        try:
            namespace.update(_prelude_names())
            exec(_compile(setup, '<setup>', 'exec'), namespace)
        except BaseException as ex:
            if isinstance(ex, (KeyboardInterrupt, SystemExit)):
                raise
            return describe_exception(ex, 'setup')
        try:
            try:
                code = _compile(expr, '<expr>', 'eval')
            except SyntaxError:
                exec(_compile(expr, '<expr>', 'exec'), namespace)
                result = namespace.get('result')
            else:
                result = eval(code, namespace)
        except BaseException as ex:
            if isinstance(ex, (KeyboardInterrupt, SystemExit)):
                raise
            return describe_exception(ex, 'expr')
        return describe(result)
    finally:
        if sys.modules.get(SNIPPET_MODULE) is module:
            del sys.modules[SNIPPET_MODULE]


def evaluate_many(cases: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [evaluate(setup, expr) for setup, expr in cases]


# ----------------------------------------------------------------------------------------------
# Finding the reference interpreter
# ----------------------------------------------------------------------------------------------


def _flavour() -> str:
    """``major.minor`` of this interpreter, with a ``t`` suffix when it is free-threaded."""
    import sysconfig

    free_threaded = bool(sysconfig.get_config_var('Py_GIL_DISABLED'))
    return '{}.{}{}'.format(*sys.version_info[:2], 't' if free_threaded else '')


def _probe(python: str) -> tuple[str | None, str | None, str | None]:
    """Return ``(flavour, optree version, optree file)`` of an interpreter (see :func:`_flavour`).

    Raises RuntimeError when the interpreter cannot be run.
    """
    code = (
        'import sys, json\n'
        'try:\n'
        '    import optree\n'
        '    v, f = optree.__version__, optree.__file__\n'
        'except Exception as e:\n'
        '    v = f = None\n'
        'import sysconfig\n'
        'ft = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))\n'
        'print(json.dumps(["%d.%d%s" % (*sys.version_info[:2], "t" if ft else ""), v, f]))\n'
    )
    try:
        proc = subprocess.run(
            [python, '-I', '-c', code],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tempfile.gettempdir(),
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as ex:
        raise RuntimeError(f'cannot run {python!r}: {ex}') from ex
    if proc.returncode != 0:
        raise RuntimeError(f'{python!r} exited with {proc.returncode}: {proc.stderr.strip()}')
    version, optree_version, optree_file = json.loads(proc.stdout.strip().splitlines()[-1])
    return version, optree_version, optree_file


def _our_optree_file() -> str | None:
    """Where this interpreter would import ``optree`` from (without importing it)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec('optree')
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None else None


def find_reference_python() -> tuple[str | None, str]:
    """Locate the reference interpreter.

    Returns ``(path, description)`` on success, ``(None, reason)`` when no usable reference exists.
    An explicitly configured ``OPTREE_REFERENCE_PYTHON`` that does not work is reported as missing
    with the reason; the caller decides whether that is a skip or (under CI) a failure.
    """
    here = _flavour()
    explicit = os.environ.get(ENV_VAR, '').strip()
    candidates: list[tuple[str, bool]] = []
    if explicit:
        candidates.append((explicit, True))
    else:
        candidates.append((FALLBACK_REFERENCE_PYTHON, False))
    reasons = []
    for python, is_explicit in candidates:
        if not is_explicit and not os.path.exists(python):
            reasons.append(f'{ENV_VAR} is not set and {python} does not exist')
            continue
        try:
            version, optree_version, optree_file = _probe(python)
        except RuntimeError as ex:
            reasons.append(f'reference interpreter unusable ({ex})')
            continue
        ours = _our_optree_file()
        same_allowed = os.environ.get(ALLOW_SAME_ENV_VAR) == '1'  # validating the harness only
        if (
            not same_allowed
            and optree_file
            and ours
            and os.path.realpath(optree_file) == os.path.realpath(ours)
        ):
            reasons.append(
                f'{python} imports the optree under test ({optree_file}), not the reference '
                'release',
            )
            continue
        if version != here:
            reasons.append(
                f'reference interpreter {python} is Python {version}, '
                f'but the tests run on Python {here}',
            )
            continue
        if optree_version != REFERENCE_VERSION:
            reasons.append(
                f'reference interpreter {python} has optree {optree_version!r}, '
                f'expected {REFERENCE_VERSION}',
            )
            continue
        return python, f'{python} (Python {version}, optree {optree_version})'
    return None, '; '.join(
        reasons
    ) + f' (set {ENV_VAR} to a Python {here} with optree=={REFERENCE_VERSION})'


# ----------------------------------------------------------------------------------------------
# Client side
# ----------------------------------------------------------------------------------------------


class ReferenceError_(RuntimeError):
    """The reference server died or misbehaved."""


class ReferenceServer:
    """A persistent reference interpreter evaluating batches of snippets."""

    def __init__(self, python: str) -> None:
        self.python = python
        self.proc: subprocess.Popen[str] | None = None
        self.hello: dict[str, Any] | None = None
        self._stderr = tempfile.TemporaryFile(mode='w+')
        self._cache: dict[tuple[str, str], dict[str, Any]] = {}

    def _start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith('PYTHON')}
        self.proc = subprocess.Popen(
            [self.python, '-I', '-u', os.path.abspath(__file__), '--serve'],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            encoding='utf-8',
            cwd=tempfile.gettempdir(),
            env=env,
        )
        hello = self._read_line()
        self.hello = hello.get('hello')
        if not self.hello or self.hello.get('version') != REFERENCE_VERSION:
            self.close()
            raise ReferenceError_(f'unexpected greeting from reference server: {hello!r}')

    def _stderr_tail(self) -> str:
        try:
            self._stderr.seek(0)
            return self._stderr.read()[-2000:]
        except OSError:
            return ''

    def _read_line(self) -> dict[str, Any]:
        assert self.proc is not None
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], SERVER_TIMEOUT)
        if not ready:
            self.close()
            raise ReferenceError_(f'reference server timed out after {SERVER_TIMEOUT}s')
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait(timeout=10)
            self.proc = None
            raise ReferenceError_(
                f'reference server exited (code {code}); stderr:\n{self._stderr_tail()}',
            )
        return json.loads(line)

    def submit(
        self, cases: list[tuple[str, str]]
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Send the uncached cases to the server without waiting.

        Pass the returned handle to :meth:`collect`.
        """
        todo = [case for case in dict.fromkeys(cases) if case not in self._cache]
        if todo:
            if self.proc is None or self.proc.poll() is not None:
                self._start()
            assert self.proc is not None and self.proc.stdin is not None
            try:
                self.proc.stdin.write(json.dumps({'cases': [list(c) for c in todo]}) + '\n')
                self.proc.stdin.flush()
            except OSError as ex:
                self.close()
                raise ReferenceError_(f'cannot write to reference server: {ex}') from ex
        return cases, todo

    def collect(
        self, pending: tuple[list[tuple[str, str]], list[tuple[str, str]]]
    ) -> list[dict[str, Any]]:
        cases, todo = pending
        if todo:
            response = self._read_line()
            results = response.get('results')
            if not isinstance(results, list) or len(results) != len(todo):
                raise ReferenceError_(f'malformed response from reference server: {response!r}')
            for case, outcome in zip(todo, results, strict=True):
                self._cache[case] = outcome
        return [self._cache[case] for case in cases]

    def evaluate_many(self, cases: list[tuple[str, str]]) -> list[dict[str, Any]]:
        return self.collect(self.submit(cases))

    def evaluate(self, setup: str, expr: str) -> dict[str, Any]:
        return self.evaluate_many([(setup, expr)])[0]

    def close(self) -> None:
        if self.proc is not None:
            try:
                if self.proc.stdin is not None:
                    self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
            self.proc = None


class ChildCrashed(RuntimeError):
    """An isolated evaluation process died instead of answering."""


def evaluate_isolated(
    cases: list[tuple[str, str]],
    *,
    python: str | None = None,
    timeout: float = SERVER_TIMEOUT,
) -> list[dict[str, Any]]:
    """Evaluate snippets in a fresh child process, so that a crash cannot kill the caller.

    By default the child is this interpreter with this ``sys.path`` (i.e. *our* optree).  Raises
    :class:`ChildCrashed` (with the exit status and the tail of stderr) if the child dies.
    """
    if python is None:
        python = sys.executable
        env = dict(os.environ)
        env['PYTHONPATH'] = os.pathsep.join(p or os.getcwd() for p in sys.path)
        argv = [python, '-u', os.path.abspath(__file__), '--serve']
    else:
        env = {k: v for k, v in os.environ.items() if not k.startswith('PYTHON')}
        argv = [python, '-I', '-u', os.path.abspath(__file__), '--serve']
    env['PYTHONFAULTHANDLER'] = '1'  # a crash prints the Python stack to stderr
    request = json.dumps({'cases': [list(c) for c in cases]}) + '\n'
    try:
        proc = subprocess.run(
            argv,
            input=request,
            capture_output=True,
            text=True,
            encoding='utf-8',
            timeout=timeout,
            env=env,
            cwd=os.getcwd() if python == sys.executable else tempfile.gettempdir(),
            check=False,
        )
    except subprocess.TimeoutExpired as ex:
        raise ChildCrashed(f'isolated evaluation timed out after {timeout}s') from ex
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 or len(lines) < 2:
        status = proc.returncode
        if status is not None and status < 0:
            status = f'killed by signal {-status}'
        raise ChildCrashed(
            f'isolated evaluation process died ({status}); last stderr lines:\n'
            + '\n'.join(proc.stderr.splitlines()[-15:]),
        )
    return json.loads(lines[-1])['results']


# ----------------------------------------------------------------------------------------------
# Comparison
# ----------------------------------------------------------------------------------------------


def compare_outcomes(
    ours: dict[str, Any],
    theirs: dict[str, Any],
    *,
    check_message: bool = False,
) -> str | None:
    """Return a description of the difference, or ``None`` when the outcomes agree."""
    if ours['ok'] != theirs['ok']:

        def show(o: dict[str, Any]) -> str:
            if o['ok']:
                return f'returned {o["repr"]}'
            return f'raised {o["exc_type"]}({o["message"]!r}) during {o["stage"]}'

        return f'ours {show(ours)}; reference {show(theirs)}'
    if ours.get('warnings') != theirs.get('warnings'):
        return f'warnings differ: ours {ours.get("warnings")}, reference {theirs.get("warnings")}'
    if ours['ok']:
        if ours['repr'] != theirs['repr']:
            return f'repr differs:\n    ours:      {ours["repr"]}\n    reference: {theirs["repr"]}'
        if ours['type'] != theirs['type']:
            return f'type differs: ours {ours["type"]}, reference {theirs["type"]}'
        if ours.get('parts') != theirs.get('parts'):
            return (
                f'parts differ:\n    ours:      {ours.get("parts")}\n'
                f'    reference: {theirs.get("parts")}'
            )
        return None
    if ours['exc_type'] != theirs['exc_type']:
        return (
            f'exception type differs: ours {ours["exc_type"]}({ours["message"]!r}), '
            f'reference {theirs["exc_type"]}({theirs["message"]!r})'
        )
    if ours['stage'] != theirs['stage']:
        return (
            'exception raised at a different stage: '
            f'ours {ours["stage"]}, reference {theirs["stage"]}'
        )
    if check_message and ours['message'] != theirs['message']:
        return (
            f'exception message differs:\n    ours:      {ours["message"]!r}\n'
            f'    reference: {theirs["message"]!r}'
        )
    return None


# ----------------------------------------------------------------------------------------------
# Server side
# ----------------------------------------------------------------------------------------------


def serve() -> int:
    import optree  # the reference implementation

    out = sys.stdout
    hello = {
        'version': getattr(optree, '__version__', None),
        'file': getattr(optree, '__file__', None),
        'python': '{}.{}.{}'.format(*sys.version_info[:3]),
    }
    out.write(json.dumps({'hello': hello}) + '\n')
    out.flush()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        request = json.loads(line)
        results = evaluate_many([tuple(case) for case in request['cases']])
        out.write(json.dumps({'results': results}) + '\n')
        out.flush()
    return 0


if __name__ == '__main__' and sys.argv[1:] == ['--serve']:
    sys.exit(serve())
