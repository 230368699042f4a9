"""The pybind11 build flags that optree 0.20.0's test suite imports from ``optree._C``.

optree 0.20.0 is a pybind11 extension; our ``optree._C`` is built with Cython and does not
define these names. Their meaning holds for it (``PyTreeKind`` is a native ``enum.IntEnum``,
and the module supports subinterpreters), so the upstream runner supplies them by importing
this module: in its own process through the ``upstream_shim`` plugin, and in the child
processes the suite starts through the suite's ``helpers`` module, which
``tools/upstream_suite.py`` makes import this first. They are never added to our module.
"""

import optree._C

FLAGS = {
    'PYBIND11_HAS_NATIVE_ENUM': True,
    'PYBIND11_HAS_SUBINTERPRETER_SUPPORT': True,
}

for _name, _value in FLAGS.items():
    if not hasattr(optree._C, _name):
        setattr(optree._C, _name, _value)
