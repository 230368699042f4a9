"""The registry is sharded per interpreter: each subinterpreter gets its own shard, which
disappears when the interpreter is destroyed, and nothing it registers reaches another one.

Subinterpreters with their own GIL exist from CPython 3.12 (``_xxsubinterpreters``), 3.13
(``_interpreters``) and 3.14 (``concurrent.interpreters``); on 3.11 these tests are skipped.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import optree
import optree._C as _C

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 12), reason='subinterpreters with their own GIL need CPython 3.12+'
)


# Defines create() -> id, run(id, code) and destroy(id) for the running CPython; shared with the
# child process of the exit test.
LOW_LEVEL_API = textwrap.dedent(
    """
    import sys

    if sys.version_info >= (3, 13):
        import _interpreters

        def create():
            return _interpreters.create('isolated')

        def run(interpreter_id, code):
            error = _interpreters.exec(interpreter_id, code)
            if error is not None:
                raise RuntimeError(f'subinterpreter failed: {error}')

        destroy = _interpreters.destroy
    else:
        import _xxsubinterpreters

        def create():
            return _xxsubinterpreters.create(isolated=True)

        run = _xxsubinterpreters.run_string
        destroy = _xxsubinterpreters.destroy
    """
)


def _low_level_api():
    namespace: dict = {}
    exec(LOW_LEVEL_API, namespace)
    low_level_run = namespace['run']

    def run(interpreter_id: int, code: str) -> None:
        # A subinterpreter builds its own sys.path, which may put the work tree (whose optree/
        # has no compiled _C) first: give it the path this process imported optree from.
        low_level_run(interpreter_id, f'import sys\nsys.path[:] = {sys.path!r}\n' + code)

    return namespace['create'], run, namespace['destroy']


SUB_CODE = textwrap.dedent(
    """
    import optree, optree._C as C

    class Pair:
        def __init__(self, a, b):
            self.a, self.b = a, b

    optree.register_pytree_node(
        Pair, lambda p: ((p.a, p.b), None), lambda _, c: Pair(*c), namespace='sub'
    )
    leaves, spec = optree.tree_flatten({'b': (1, [2, None]), 'a': Pair(3, 4)}, namespace='sub')
    assert leaves == [3, 4, 1, 2], leaves
    assert repr(spec) == (
        "PyTreeSpec({'a': CustomTreeNode(Pair[None], [*, *]), 'b': (*, [*, None])}, "
        "namespace='sub')"
    ), repr(spec)
    assert optree.tree_unflatten(spec, leaves)['b'] == (1, [2, None])
    assert not C.is_current_interpreter_main()
    assert C.get_current_interpreter_id() in C.get_alive_interpreter_ids()
    assert C.get_registry_size('sub') == C.get_registry_size('') + 1
    """
)


def test_subinterpreter_gets_its_own_shard_and_releases_it():
    create, run, destroy = _low_level_api()
    alive_before = _C.get_alive_interpreter_ids()
    seen_before = _C.get_num_interpreters_seen()
    size_before = _C.get_registry_size()

    interpreter_id = create()
    try:
        run(interpreter_id, SUB_CODE)
        assert _C.get_alive_interpreter_ids() == alive_before | {interpreter_id}
        assert _C.get_num_interpreters_alive() == len(alive_before) + 1
        assert _C.get_num_interpreters_seen() == seen_before + 1
        # The subinterpreter's registration is not visible here.
        assert _C.get_registry_size() == size_before
        assert _C.get_registry_size('sub') == _C.get_registry_size('')
    finally:
        destroy(interpreter_id)

    assert _C.get_alive_interpreter_ids() == alive_before
    assert _C.get_num_interpreters_seen() == seen_before + 1
    assert optree.tree_leaves({'b': 1, 'a': 2}) == [2, 1]


def test_repeated_interpreter_cycles_leave_no_shards_behind():
    create, run, destroy = _low_level_api()
    alive_before = _C.get_alive_interpreter_ids()
    seen_before = _C.get_num_interpreters_seen()
    cycles = 20
    for _ in range(cycles):
        interpreter_id = create()
        try:
            run(interpreter_id, SUB_CODE)
        finally:
            destroy(interpreter_id)
    assert _C.get_alive_interpreter_ids() == alive_before
    assert _C.get_num_interpreters_seen() == seen_before + cycles


def test_process_exits_cleanly_with_a_live_subinterpreter(tmp_path):
    # The main interpreter finishes while a subinterpreter that imported optree is alive.
    script = (
        f'import sys\nsys.path[:0] = {sys.path!r}\n'
        + LOW_LEVEL_API
        + f'interpreter_id = create()\nrun(interpreter_id, {SUB_CODE!r})\n'
        + 'import optree\nprint(optree.tree_leaves([1, (2, 3)]))\n'
    )
    # Isolated and away from the work tree, whose optree/ (no compiled _C) would otherwise
    # shadow the installed package in the subinterpreter, which builds its own sys.path.
    result = subprocess.run(
        [sys.executable, '-I', '-c', script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[1, 2, 3]'
    assert 'Traceback' not in result.stderr
