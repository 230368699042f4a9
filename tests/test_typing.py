"""optree.typing: static typing and the runtime helpers.

Static typing: a typed usage example must pass mypy on our package exactly as on optree 0.20.0.
mypy runs on tests/harness/typing_example.py twice, once resolving ``optree`` in this
environment (our package, with its ``py.typed`` and ``_C.pyi``) and once in the reference venv
(``--python-executable``). Both must accept it, and both must reject a broken variant with the
same errors. The example also runs, so it cannot drift from what the API does.

Runtime helpers, against optree 0.20.0: is_namedtuple / namedtuple_fields / is_structseq /
structseq_fields and their class and instance variants, StructSequence, PyTree[...],
PyTreeTypeVar, and the module constants (MAX_RECURSION_DEPTH, NONE_IS_LEAF, PyTreeKind).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.integration_support import require

_TESTS = Path(__file__).resolve().parent
_EXAMPLE = _TESTS / 'harness' / 'typing_example.py'
_CONFIG = _TESTS.parent / 'pyproject.toml'

# Lines appended to the example: each is wrong in a way the annotations must catch.
_BROKEN = """

def broken() -> None:
    leaves, spec = optree.tree_flatten([1], none_is_leaf='yes')
    count: str = spec.num_leaves
    optree.tree_map(len, [1], namespace=1)
    optree.treespec_tuple([1, 2])
    accessor: PyTreeAccessor = optree.tree_paths([1])[0]
"""


def _mypy(tmp_path: Path, python: str | None) -> dict[str, list[str]]:
    """mypy on the example and its broken variant at once: ``{file name: [line code, ...]}``."""
    broken = tmp_path / 'broken_example.py'
    broken.write_text(_EXAMPLE.read_text() + _BROKEN)
    command = [
        sys.executable,
        '-m',
        'mypy',
        '--config-file',
        str(_CONFIG),
        '--cache-dir',
        str(tmp_path / f'cache-{python is None}'),
        '--no-error-summary',
        '--hide-error-context',
        '--no-pretty',
        '--show-error-codes',
    ]
    if python is not None:
        command += ['--python-executable', python]
    proc = subprocess.run(
        [*command, str(_EXAMPLE), str(broken)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        check=False,
    )
    assert proc.returncode in {0, 1}, proc.stdout + proc.stderr
    found: dict[str, list[str]] = {_EXAMPLE.name: [], broken.name: []}
    for line in proc.stdout.splitlines():
        match = re.match(r'^(.*?):(\d+): error: .*\[(.*)\]$', line)
        if match:
            # Only the line and the error code: mypy spells our types' origins differently.
            found[Path(match[1]).name].append(f'{match[2]} {match[3]}')
    return found


@pytest.fixture(scope='module')
def mypy_available():
    require('mypy')


def test_example_runs(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(_EXAMPLE)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == 'typing example ok'


def test_example_type_checks_like_the_reference(mypy_available, reference_server, tmp_path):
    ours = _mypy(tmp_path, None)
    theirs = _mypy(tmp_path, reference_server.python)
    assert theirs[_EXAMPLE.name] == [], f'the example is not valid optree 0.20.0 code: {theirs}'
    assert ours[_EXAMPLE.name] == [], f'mypy rejects the example on our package: {ours}'
    # The broken variant: rejected, with the same errors as on optree 0.20.0.
    assert len(theirs['broken_example.py']) >= 4, theirs
    assert ours['broken_example.py'] == theirs['broken_example.py']


def test_namedtuple_and_structseq_helpers(differential):
    setup = (
        'class SubPoint(Point):\n'
        '    pass\n'
        'class FakeFields(tuple):\n'
        "    _fields = ('a',)\n"
        'ST = type(time.gmtime(0))\n'
    )
    differential.check(
        setup,
        [
            '[optree.is_namedtuple(x) for x in (SubPoint, SubPoint(1, 2), FakeFields, Pair, 1)]',
            '[optree.is_namedtuple_class(x) for x in (SubPoint, FakeFields, Point(1, 2), 1)]',
            '[optree.is_namedtuple_instance(x) for x in (SubPoint(1, 2), FakeFields((1,)), Point)]',
            'optree.namedtuple_fields(SubPoint)',
            'optree.namedtuple_fields(SubPoint(1, 2))',
            'optree.namedtuple_fields(FakeFields)',
            'optree.namedtuple_fields(1)',
            'optree.namedtuple_fields(time.gmtime(0))',
            '[optree.is_structseq(x) for x in (ST, time.gmtime(0), os.stat_result, Point, 1)]',
            '[optree.is_structseq_class(x) for x in (ST, time.gmtime(0), tuple, FakeFields)]',
            '[optree.is_structseq_instance(x) for x in (ST, time.gmtime(0), (1,))]',
            'optree.structseq_fields(ST)',
            'optree.structseq_fields(os.stat_result)',
            'optree.structseq_fields(Point(1, 2))',
            'optree.structseq_fields(1)',
            'optree.structseq_fields(type(sys.flags))',
            'optree.typing.is_namedtuple is optree.is_namedtuple',
            'optree.typing.StructSequence',
            'isinstance(time.gmtime(0), optree.typing.StructSequence)',
            'isinstance((1,), optree.typing.StructSequence)',
            'optree.typing.PyTree[int]',
            "optree.typing.PyTree[int, 'IntTree']",
            "optree.typing.PyTreeTypeVar('IntTree', int)",
            'optree.typing.PyTreeTypeVar(1, int)',
            'optree.typing.PyTree[int] == optree.typing.PyTree[int]',
        ],
        check_message=True,
    )


def test_introspection_helpers(differential):
    differential.check(
        '',
        [
            '[optree.is_namedtuple(x) for x in (Point, Point(1, 2), (1, 2), time.gmtime(0), Pair)]',
            '[optree.is_namedtuple_class(x) for x in (Point, Point(1, 2), tuple, Pair, '
            'type(sys.float_info))]',
            '[optree.is_namedtuple_instance(x) for x in (Point, Point(1, 2), (1, 2), Pair(1))]',
            'optree.namedtuple_fields(Point)',
            'optree.namedtuple_fields(Pair(1))',
            'optree.namedtuple_fields((1, 2))',
            '[optree.is_structseq(x) for x in (time.struct_time, time.gmtime(0), Point, (1,))]',
            '[optree.is_structseq_class(x) for x in (time.struct_time, type(sys.float_info), '
            'tuple, Point)]',
            '[optree.is_structseq_instance(x) for x in (time.struct_time, sys.float_info, (1,))]',
            'optree.structseq_fields(time.struct_time)',
            'optree.structseq_fields(sys.float_info)',
            'optree.structseq_fields(os.stat_result(tuple(range(10))))',
            'optree.structseq_fields(Point)',
            'optree.MAX_RECURSION_DEPTH',
            '(optree.NONE_IS_LEAF, optree.NONE_IS_NODE)',
            'list(optree.PyTreeKind)',
            '[int(k) for k in optree.PyTreeKind]',
            'optree.PyTreeKind.NUM_KINDS',
        ],
    )
