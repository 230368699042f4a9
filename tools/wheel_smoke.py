#!/usr/bin/env python3
"""Smoke test of an installed optree (``tools/build_wheels.py`` runs it in each fresh venv).

Run with ``python -I`` from outside the work tree, so the installed package is imported. With
``--expect-bundled-libcds`` it also checks that the system libcds cannot be loaded here (the
caller hid it) and that the libcds mapped into the process is the wheel's own copy.
"""

from __future__ import annotations

import ctypes
import pickle
import sys
import sysconfig
from collections import namedtuple


def main() -> int:
    bundled = '--expect-bundled-libcds' in sys.argv[1:]
    if bundled:
        try:
            ctypes.CDLL('libcds.so.2.3.3')
        except OSError:
            pass
        else:
            raise SystemExit('the system libcds is still loadable: it was not hidden')

    import optree
    import optree._C

    tree = {'b': (1, [2, 3]), 'a': 4, 'c': None}
    leaves, spec = optree.tree_flatten(tree)
    assert leaves == [4, 1, 2, 3], leaves
    assert repr(spec) == "PyTreeSpec({'a': *, 'b': (*, [*, *]), 'c': None})", spec
    assert optree.tree_unflatten(spec, leaves) == tree
    assert optree.tree_map(lambda x: x * 2, tree) == {'b': (2, [4, 6]), 'a': 8, 'c': None}
    assert pickle.loads(pickle.dumps(spec)) == spec

    point = namedtuple('Point', 'x y')
    assert optree.tree_leaves(point(1, [2])) == [1, 2]

    class Box:
        def __init__(self, value):
            self.value = value

    optree.register_pytree_node(
        Box,
        lambda box: ((box.value,), None, None),
        lambda _, children: Box(*children),
        namespace='smoke',
    )
    assert optree.tree_leaves(Box([1, 2]), namespace='smoke') == [1, 2]

    if sysconfig.get_config_var('Py_GIL_DISABLED'):
        assert not sys._is_gil_enabled(), 'importing optree enabled the GIL'

    if sys.version_info >= (3, 14):
        from concurrent import interpreters

        interp = interpreters.create()
        try:
            interp.exec('import optree')
            assert interp.call(optree.tree_leaves, {'b': [1, 2], 'a': 3}) == [3, 1, 2]
        finally:
            interp.close()

    with open('/proc/self/maps') as maps:
        cds = {line.split()[-1] for line in maps if 'libcds' in line}
    if bundled and (not cds or any('/optree.libs/' not in path for path in cds)):
        raise SystemExit(f'libcds does not come from the wheel: {sorted(cds)}')
    print(
        f'smoke test passed: optree {optree.__version__} on {sys.version.split()[0]}'
        f'{" (free-threaded)" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""}, '
        f'libcds {", ".join(sorted(cds)) or "not mapped"}',
        flush=True,
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
