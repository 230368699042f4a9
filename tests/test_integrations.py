"""optree.integrations (numpy, torch, jax, attrs), compared with optree 0.20.0.

Each side imports the library from its own environment; tox and tools/reference_venv.py install
the same pinned versions (pyproject.toml's ``test-integrations`` extra).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from harness.integration_support import require

# ---------------------------------------------------------------------------------------------
# The package itself: lazy submodules
# ---------------------------------------------------------------------------------------------


def test_integrations_package_is_lazy(differential):
    differential.check(
        '',
        [
            'sorted(optree.integrations.SUBMODULES)',
            'dir(optree.integrations)',
            'optree.integrations.no_such_module',
            "getattr(optree.integrations, 'SUBMODULES') is optree.integrations.SUBMODULES",
        ],
        check_message=True,
    )


def test_import_optree_imports_no_integration_library(tmp_path):
    code = textwrap.dedent(
        """
        import sys
        import optree
        heavy = {'numpy', 'torch', 'jax', 'attrs'} & set(sys.modules)
        assert not heavy, heavy
        assert 'optree.integrations' in sys.modules
        assert 'optree.integrations.numpy' not in sys.modules
        """,
    )
    # Not from the repository root, whose optree/ has no compiled core.
    subprocess.run([sys.executable, '-c', code], check=True, cwd=tmp_path)


# ---------------------------------------------------------------------------------------------
# tree_ravel: numpy, torch, jax
# ---------------------------------------------------------------------------------------------

NUMPY_SETUP = """
import numpy as np
from optree.integrations import numpy as ravel_module
SAME = {'w': np.arange(6, dtype=np.float32).reshape(2, 3), 'b': np.arange(2, dtype=np.float32)}
MIXED = [np.arange(4, dtype=np.int16).reshape(2, 2), (np.float64(1.5), np.array([True, False])),
         {'c': np.array([1 + 2j, 3j], dtype=np.complex64)}]
SCALARS = {'x': 1, 'y': 2.5, 'z': [True, None]}
"""

NUMPY_EXPRS = [
    'ravel_module.tree_ravel(SAME)[0]',
    'ravel_module.tree_ravel(SAME)[1](ravel_module.tree_ravel(SAME)[0])',
    'ravel_module.tree_ravel(SAME)[1](np.arange(8))',  # same dtype: any dtype is accepted
    'ravel_module.tree_ravel(SAME)[1](np.arange(7))',
    'ravel_module.tree_ravel(SAME)[1](np.zeros((2, 4)))',
    'ravel_module.tree_ravel(SAME)[1](list(range(8)))',
    'ravel_module.tree_ravel(MIXED)[0]',
    'ravel_module.tree_ravel(MIXED)[0].dtype',
    'ravel_module.tree_ravel(MIXED)[1](ravel_module.tree_ravel(MIXED)[0])',
    '[x.dtype for x in optree.tree_leaves('
    'ravel_module.tree_ravel(MIXED)[1](ravel_module.tree_ravel(MIXED)[0]))]',
    'ravel_module.tree_ravel(MIXED)[1](np.zeros(10))',
    'ravel_module.tree_ravel(MIXED)[1](np.zeros(9, dtype=np.complex128))',
    'ravel_module.tree_ravel(SCALARS)[0]',
    'ravel_module.tree_ravel(SCALARS)[1](np.array([7.0, 8.0, 9.0]))',
    'ravel_module.tree_ravel(SCALARS, none_is_leaf=True)[0]',
    'ravel_module.tree_ravel({})[0]',
    'ravel_module.tree_ravel({})[1](np.zeros(0))',
    'ravel_module.tree_ravel([None, ()])[1](np.zeros(0))',
    'ravel_module.tree_ravel({})[1](np.zeros(1))',
    'ravel_module.tree_ravel(SAME, lambda x: isinstance(x, np.ndarray) and x.ndim == 1)[0]',
    'ravel_module.tree_ravel(SAME, is_leaf=lambda x: isinstance(x, dict))',
    "ravel_module.tree_ravel(SAME, namespace='zoo')[0]",
    'ravel_module.tree_ravel([np.zeros((0, 3)), np.ones(1)])[0]',
    'ravel_module.tree_ravel([np.zeros((0, 3)), np.ones(1)])[1](np.array([5.0]))',
    'type(ravel_module.tree_ravel(SAME)[1])',
    'ravel_module.ravel_pytree is ravel_module.tree_ravel',
    "ravel_module.tree_ravel(['a', 'b'])[0]",
]


def test_numpy_tree_ravel(differential):
    require('numpy')
    differential.check(NUMPY_SETUP, NUMPY_EXPRS, check_message=True)
    # optree 0.20.0's message for a bad is_leaf comes from pybind11: compare the type only.
    differential.check(NUMPY_SETUP, ['ravel_module.tree_ravel(1, 2)'])


TORCH_SETUP = """
import torch
from optree.integrations import torch as ravel_module
SAME = {'w': torch.arange(6, dtype=torch.float32).reshape(2, 3), 'b': torch.ones(2)}
MIXED = [torch.arange(4, dtype=torch.int16).reshape(2, 2),
         (torch.tensor(1.5, dtype=torch.float64), torch.tensor([True, False])),
         {'c': torch.tensor([1 + 2j, 3j], dtype=torch.complex64)}]
"""

TORCH_EXPRS = [
    'ravel_module.tree_ravel(SAME)[0]',
    'ravel_module.tree_ravel(SAME)[1](ravel_module.tree_ravel(SAME)[0])',
    'ravel_module.tree_ravel(SAME)[1](torch.arange(8))',
    'ravel_module.tree_ravel(SAME)[1](torch.arange(7))',
    'ravel_module.tree_ravel(SAME)[1](list(range(8)))',
    'ravel_module.tree_ravel(MIXED)[0]',
    'ravel_module.tree_ravel(MIXED)[1](ravel_module.tree_ravel(MIXED)[0])',
    'ravel_module.tree_ravel(MIXED)[1](torch.zeros(10))',
    'ravel_module.tree_ravel(MIXED)[1](torch.zeros(9, dtype=torch.complex128))',
    'ravel_module.tree_ravel({})[0]',
    'ravel_module.tree_ravel({})[1](torch.zeros(0))',
    'ravel_module.tree_ravel({})[1](torch.zeros(2))',
    'ravel_module.tree_ravel({})[1]([])',
    'ravel_module.tree_ravel([torch.ones(1), 2.0])',
    'ravel_module.tree_ravel([torch.ones(1), None], none_is_leaf=True)',
    'ravel_module.tree_ravel([torch.ones(1), None])[0]',
    'ravel_module.tree_ravel(SAME, is_leaf=lambda x: isinstance(x, dict))',
    'type(ravel_module.tree_ravel(SAME)[1])',
    'ravel_module.ravel_pytree is ravel_module.tree_ravel',
]


def test_torch_tree_ravel(differential):
    require('torch')
    differential.check(TORCH_SETUP, TORCH_EXPRS, check_message=True)


JAX_SETUP = """
import jax.numpy as jnp
import numpy as np
from optree.integrations import jax as ravel_module
SAME = {'w': jnp.arange(6, dtype=jnp.float32).reshape(2, 3), 'b': jnp.ones(2)}
MIXED = [jnp.arange(4, dtype=jnp.int16).reshape(2, 2), (np.float32(1.5), jnp.array([True, False]))]
"""

JAX_EXPRS = [
    'ravel_module.tree_ravel(SAME)[0]',
    'ravel_module.tree_ravel(SAME)[1](ravel_module.tree_ravel(SAME)[0])',
    'ravel_module.tree_ravel(SAME)[1](jnp.arange(8))',
    'ravel_module.tree_ravel(SAME)[1](jnp.arange(7))',
    'ravel_module.tree_ravel(MIXED)[0]',
    'ravel_module.tree_ravel(MIXED)[1](ravel_module.tree_ravel(MIXED)[0])',
    'ravel_module.tree_ravel(MIXED)[1](jnp.zeros(7, dtype=jnp.int32))',
    'ravel_module.tree_ravel({})[0]',
    'ravel_module.tree_ravel({})[1](jnp.zeros(0))',
    'ravel_module.tree_ravel({})[1](jnp.zeros(3))',
    'ravel_module.tree_ravel([1, 2.5])[0]',
    # The unravel function is hashable and equal for equal layouts (a static jit argument).
    'ravel_module.tree_ravel(SAME)[1] == ravel_module.tree_ravel(SAME)[1]',
    'hash(ravel_module.tree_ravel(SAME)[1]) == hash(ravel_module.tree_ravel(SAME)[1])',
    'ravel_module.tree_ravel(SAME)[1] == ravel_module.tree_ravel(MIXED)[1]',
    'type(ravel_module.tree_ravel(SAME)[1]).__name__',
    'ravel_module.HashablePartial(len, [1])',
    'ravel_module.HashablePartial(lambda a, b: a + b, 1)(2)',
]


def test_jax_tree_ravel(differential):
    require('jax')
    differential.check(JAX_SETUP, JAX_EXPRS, check_message=True)


def test_unavailable_library_gives_import_error(differential):
    """Each integration module needs its library; without it the import fails the same way."""
    differential.check(
        "import sys\nsys.modules['some_missing_library'] = None\n",
        [
            # A module set to None in sys.modules cannot be imported: use it as a stand-in.
            'import importlib\n'
            "saved = sys.modules.get('numpy', 0)\n"
            "sys.modules['numpy'] = None\n"
            "sys.modules.pop('optree.integrations.numpy', None)\n"
            'try:\n'
            "    importlib.import_module('optree.integrations.numpy')\n"
            'except ImportError as ex:\n'
            '    result = type(ex).__name__\n'
            'finally:\n'
            '    if saved == 0:\n'
            "        del sys.modules['numpy']\n"
            '    else:\n'
            "        sys.modules['numpy'] = saved\n"
            "    sys.modules.pop('optree.integrations.numpy', None)\n",
        ],
    )


# ---------------------------------------------------------------------------------------------
# attrs
# ---------------------------------------------------------------------------------------------

ATTRS_SETUP = """
import attrs as real_attrs
import warnings
from optree.integrations import attrs as oattrs
NS = 'attrs-tests'

@oattrs.define(namespace=NS)
class Point:
    x: float
    y: float
    z: float = 0.0

@oattrs.frozen(namespace=NS)
class Tagged:
    value: object
    tag: str = oattrs.field(pytree_node=False, default='t')
    _secret: int = oattrs.field(default=0)
    cache: object = oattrs.field(init=False, pytree_node=False, default=None)

@oattrs.mutable(namespace=NS)
class Meta:
    a: object = oattrs.field(metadata={'pytree_node': False, 'other': 1})
    b: object = oattrs.field(metadata={'pytree_node': True})

Made = oattrs.make_class('Made', ['p', 'q'], namespace=NS)

@real_attrs.define
class Plain:
    u: object
    v: object = real_attrs.field(default=1, metadata={'pytree_node': False})

oattrs.register_node(Plain, namespace=NS)

TREE = [Point(1.0, (2.0, None)), Tagged({'k': 3}, tag='x', secret=4), Meta(5, [6]), Made(7, 8),
        Plain(u=9, v=10)]
leaves, spec = optree.tree_flatten(TREE, namespace=NS)
"""

ATTRS_EXPRS = [
    '(leaves, spec)',
    'optree.tree_unflatten(spec, leaves)',
    'optree.tree_unflatten(spec, leaves) == TREE',
    'optree.tree_flatten(TREE)',
    'optree.tree_paths(TREE, namespace=NS)',
    'optree.tree_flatten_with_path(TREE, namespace=NS)',
    'optree.tree_accessors(TREE, namespace=NS)',
    '[a(TREE) for a in optree.tree_accessors(TREE, namespace=NS)]',
    "[a.codify('tree') for a in optree.tree_accessors(TREE, namespace=NS)]",
    '[[(type(e).__name__, e.field, e.name, e.fields, e.init_fields, e.children_fields) '
    'for e in a] for a in optree.tree_accessors(TREE, namespace=NS)]',
    'spec.entries()',
    'spec.child(1).entries()',
    'optree.tree_map(lambda x: x * 2, TREE, namespace=NS)',
    'Tagged.__optree_attrs_fields__',
    '(Point.__optree_attrs_fields__[0].keys(), Point.__optree_attrs_fields__[1].keys())',
    'type(Tagged.__optree_attrs_fields__[0]).__name__',
    'oattrs.AttrsEntry(0, Point, PyTreeKind.CUSTOM)',
    "oattrs.AttrsEntry('y', Point, PyTreeKind.CUSTOM)",
    "oattrs.AttrsEntry('y', Point, PyTreeKind.CUSTOM)(Point(1, 2))",
    "oattrs.AttrsEntry('y', Point, PyTreeKind.CUSTOM).codify('p')",
    'oattrs.AttrsEntry(1, Plain, PyTreeKind.CUSTOM).field',
    'oattrs.AttrsEntry(0, Tagged, PyTreeKind.CUSTOM) == '
    'oattrs.AttrsEntry(0, Tagged, PyTreeKind.CUSTOM)',
    'oattrs.field(pytree_node=False).metadata',
    "oattrs.field(metadata={'pytree_node': False}).metadata",
    'oattrs.field(default=1).metadata',
    'oattrs.field(init=False)',
    'oattrs.field(init=False, pytree_node=False).metadata',
    'oattrs.fields(Point)',
    'oattrs.asdict(Point(1, 2))',
    'oattrs.has(Point), oattrs.has(int)',
    'oattrs.mutable is oattrs.define',
    'oattrs.NOTHING is real_attrs.NOTHING',
    # Registration errors.
    'oattrs.register_node(Point, namespace=NS)',
    'oattrs.register_node(Point, namespace=NS + "-other")',
    'oattrs.register_node(int, namespace=NS)',
    'oattrs.register_node(1, namespace=NS)',
    'oattrs.register_node(Point)',
    "oattrs.register_node('ns', namespace='ns')",
    "oattrs.register_node('')",
    'oattrs.register_node(real_attrs.define(type("Fresh", (), {"__annotations__": {"a": int}})),'
    ' namespace=1)',
    "oattrs.define(1, namespace='x')",
    'oattrs.define(namespace=NS)(1)',
    'oattrs.register_node(namespace=NS)',
    "oattrs.register_node('deco-ns')",
    # Decorator forms.
    "oattrs.register_node('deco-ns')(real_attrs.define(type('D1', (), "
    "{'__annotations__': {'a': int}})))",
    'optree.tree_flatten(oattrs.register_node(namespace="deco-ns2")(real_attrs.define(type("D2", '
    '(), {"__annotations__": {"a": int}})))(a=1), namespace="deco-ns2")',
    # A non-init child field is refused at registration.
    'oattrs.register_node(real_attrs.define(type("NI", (), {"__annotations__": {"a": int}, '
    '"a": real_attrs.field(init=False, default=0)})), namespace=NS)',
    # init=False classes warn (tree_unflatten will not be able to call __init__).
    'with warnings.catch_warnings(record=True) as caught:\n'
    "    warnings.simplefilter('always')\n"
    '    cls = oattrs.define(init=False, namespace=NS)(type("NoInit", (), '
    '{"__annotations__": {"a": int}}))\n'
    'result = [(w.category.__name__, str(w.message)) for w in caught]\n',
    # '' is the global namespace; unregister again, so that no later test sees the class.
    "G = oattrs.define(namespace='')(type('G', (), {'__annotations__': {'a': int}}))\n"
    'result = optree.tree_flatten(G(a=1))\n'
    "optree.unregister_pytree_node(G, namespace=getattr(optree.registry, '__GLOBAL_NAMESPACE'))\n",
    # Frozen classes stay frozen; unflatten re-runs __init__ (converters apply again).
    'optree.tree_map(lambda x: x + 1, Tagged(1, tag="q", secret=2), namespace=NS)',
    'optree.tree_unflatten(optree.tree_structure(oattrs.define(namespace=NS)(type("Conv", (), '
    '{"__annotations__": {"a": int}, "a": real_attrs.field(converter=lambda v: v * 10)}))(1), '
    'namespace=NS), [5])',
    "oattrs.frozen(namespace=NS)(type('FZ', (), {'__annotations__': {'a': int}}))(1).__class__"
    '.__setattr__',
    'pickle.loads(pickle.dumps(spec)) == spec',
]


def test_attrs_integration(differential):
    require('attrs')
    differential.check(ATTRS_SETUP, ATTRS_EXPRS, check_message=True)


def test_missing_library_skips_locally_and_fails_under_ci(monkeypatch):
    from harness import integration_support

    monkeypatch.setattr(integration_support, '_importable', lambda library: False)
    monkeypatch.setenv('CI', 'true')
    with pytest.raises(pytest.fail.Exception, match='numpy is not installed'):
        require('numpy')
    here = sys.version_info[:2]
    monkeypatch.setitem(integration_support._INSTALLED_ON, 'torch', {here})
    with pytest.raises(pytest.fail.Exception, match='torch is not installed'):
        require('torch')
    # Where the extras do not provide it (torch off Python 3.11), a skip even under CI.
    monkeypatch.setitem(integration_support._INSTALLED_ON, 'torch', {(here[0], here[1] + 1)})
    with pytest.raises(pytest.skip.Exception, match='provide it on Python'):
        require('torch')
    monkeypatch.setenv('CI', '')
    with pytest.raises(pytest.skip.Exception, match='numpy is not installed'):
        require('numpy')


ATTRS_INHERITANCE_SETUP = """
import attrs as real_attrs
from optree.integrations import attrs as oattrs


@oattrs.define(namespace='attrs-base')
class Base:
    x: int
    y: int = oattrs.field(default=0, pytree_node=False)


@real_attrs.define
class Derived(Base):  # inherits the marker attribute, not the registration
    z: int = 1


oattrs.register_node(Derived, namespace='attrs-derived')


@real_attrs.frozen
class Aliased:
    a: int
    _b: int = real_attrs.field(alias='bee')


oattrs.register_node(Aliased, namespace='attrs-base')
"""


def test_attrs_inheritance_and_aliases(differential):
    require('attrs')
    differential.check(
        ATTRS_INHERITANCE_SETUP,
        [
            "optree.tree_flatten(Derived(1, 2, 3), namespace='attrs-base')",
            "optree.tree_flatten(Derived(1, 2, 3), namespace='attrs-derived')",
            "optree.tree_accessors(Derived(1, 2, 3), namespace='attrs-derived')",
            'oattrs.AttrsEntry(1, Derived, PyTreeKind.CUSTOM).children_fields',
            'oattrs.AttrsEntry(1, Base, PyTreeKind.CUSTOM).children_fields',
            "optree.tree_flatten(Aliased(1, bee=2), namespace='attrs-base')",
            'optree.tree_unflatten(optree.tree_structure(Aliased(1, bee=2), '
            "namespace='attrs-base'), [5, 6])",
            "[a.codify('s') for a in optree.tree_accessors(Aliased(1, bee=2), "
            "namespace='attrs-base')]",
            "oattrs.register_node(Aliased, namespace='attrs-other')",
            "oattrs.make_class('C', {'p': oattrs.field(pytree_node=False), 'q': "
            "real_attrs.field()}, namespace='attrs-base')(1, 2)",
            "optree.tree_flatten(oattrs.make_class('C', {'p': oattrs.field(pytree_node=False), "
            "'q': real_attrs.field()}, namespace='attrs-base')(1, 2), namespace='attrs-base')",
        ],
        check_message=True,
    )
