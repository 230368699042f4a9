"""A real client: PyTorch's ``torch.utils._cxx_pytree`` running on our optree.

torch imports ``_cxx_pytree`` only if ``importlib.metadata.version('optree')`` is at least its
minimum (0.13.0 for torch 2.13), then uses optree's flatten/unflatten/map, treespec
constructors, ``register_pytree_node`` (namespace ``'torch'``, ``none_is_leaf=True``) and keeps
``dict_insertion_ordered(True, namespace='torch')`` entered for the life of the process.

Every expression is compared with the same expression on optree 0.20.0 (with the same torch), and
where torch's pure-Python ``torch.utils._pytree`` gives the same answer, with that too.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from harness.integration_support import require

SETUP = """
import torch
import torch.utils._cxx_pytree as cxx
import torch.utils._pytree as pyt

P = namedtuple('P', 'x y')
TREES = [
    1,
    None,
    torch.arange(3),
    [1, (2, None), {'b': 3, 'a': [4]}],
    {'b': [torch.ones(2), 2], 'a': (P(3, None), OrderedDict(z=1, y=2))},
    defaultdict(list, {'k': deque([1, 2], maxlen=4)}),
    (time.gmtime(0)[:2], [], (), {}),
]
PLAIN = [1, [2, (3, None)], {'b': 4, 'a': 5}, {'z': 6, 'y': [7, 8]}]


class Foo:
    def __init__(self, a, b):
        self.a = a
        self.b = b

    def __repr__(self):
        return f'Foo({self.a!r}, {self.b!r})'

    def __eq__(self, other):
        return type(other) is Foo and (self.a, self.b) == (other.a, other.b)


pyt.register_pytree_node(
    Foo,
    lambda foo: ([foo.a, foo.b], 'ctx'),
    lambda children, context: Foo(*children),
    serialized_type_name=f'{__name__}.Foo',
)


class Bar:
    def __init__(self, v):
        self.v = v

    def __repr__(self):
        return f'Bar({self.v!r})'


cxx.register_pytree_node(Bar, lambda bar: ([bar.v], None), lambda children, ctx: Bar(*children))
"""

EXPRS = [
    'optree.__version__ >= "0.13"',
    'pyt._cxx_pytree_exists',
    '[cxx.tree_flatten(t) for t in TREES]',
    '[cxx.tree_unflatten(*cxx.tree_flatten(t)) for t in TREES]',
    '[cxx.tree_leaves(t) for t in TREES]',
    '[cxx.tree_structure(t) for t in TREES]',
    '[list(cxx.tree_iter(t)) for t in TREES]',
    '[cxx.tree_is_leaf(t) for t in TREES]',
    '[cxx.tree_map(repr, t) for t in TREES]',
    'cxx.tree_map(lambda x, y: (x, y), PLAIN, PLAIN)',
    'cxx.tree_map_only(int, lambda x: -x, {"a": 1, "b": 2.0, "c": [3]})',
    'cxx.tree_map_only_(int, lambda x: None, {"a": 1})',
    'cxx.tree_all(lambda x: x > 0, PLAIN)',
    'cxx.tree_any(lambda x: x is None, PLAIN)',
    'cxx.tree_all_only(int, lambda x: x < 8, PLAIN)',
    'cxx.tree_any_only(str, lambda x: True, PLAIN)',
    'cxx.tree_map_(lambda x: None, [1, [2]])',
    # Dicts keep insertion order in torch's namespace (a dict_insertion_ordered session).
    "cxx.tree_leaves({'z': 1, 'a': 2})",
    "optree.tree_leaves({'z': 1, 'a': 2})",
    "optree.tree_leaves({'z': 1, 'a': 2}, namespace='torch')",
    # Registration through both modules.
    'cxx.tree_flatten(Foo(1, [Foo(2, None), 3]))',
    'cxx.tree_unflatten(*cxx.tree_flatten(Foo(1, [Foo(2, None), 3])))',
    'cxx.tree_map(lambda x: x * 10, Foo(1, [Foo(2, None), 3]))',
    'cxx.tree_flatten(Bar([1, 2]))',
    'cxx.tree_map(str, [Bar(1), Bar((2,))])',
    'optree.tree_flatten(Foo(1, 2))',
    "optree.tree_flatten(Foo(1, 2), namespace='torch')",
    "optree.tree_paths(Foo(1, [2]), namespace='torch')",
    'cxx.register_pytree_node(Bar, lambda b: ([b.v], None), lambda c, x: Bar(*c))',
    # Treespecs.
    "cxx.tree_structure([1, 2]) == cxx.tree_structure(['a', 'b'])",
    'cxx.tree_structure([1, 2]) == cxx.tree_structure((1, 2))',
    "cxx.treespec_dumps(cxx.tree_structure({'b': [1, 2], 'a': (3, None)}))",
    "cxx.treespec_loads(cxx.treespec_dumps(cxx.tree_structure({'b': [1, (2,)], 'a': None})))",
    'cxx.treespec_dumps(cxx.tree_structure(Foo(1, 2)))',
    'cxx.treespec_loads(cxx.treespec_dumps(cxx.tree_structure(Foo(1, 2))))',
    'cxx.treespec_pprint(cxx.tree_structure(TREES[4]))',
    'cxx.LeafSpec()',
    'cxx.tree_structure(TREES[4]).num_leaves',
    'cxx.tree_structure(TREES[4]).unflatten(range(6))',
    # Paths are not supported by torch's C++ pytree (torch raises, whatever optree does).
    'cxx.tree_flatten_with_path([1])',
    # Errors.
    'cxx.tree_unflatten([1, 2], cxx.tree_structure([1]))',
    'cxx.tree_unflatten([1], [1])',
    'cxx.tree_map(lambda x, y: x, [1], [1, 2])',
    'cxx.tree_map(lambda x, y: x, {"a": 1}, {"b": 1})',
    'cxx.register_pytree_node(int, lambda x: ([], None), lambda c, x: 0)',
]

# Results the pure-Python torch.utils._pytree must give as well (on each side).
AGREES_WITH_PYTHON_PYTREE = [
    '[cxx.tree_leaves(t) == pyt.tree_leaves(t) for t in TREES]',
    '[repr(cxx.tree_unflatten(*cxx.tree_flatten(t))) == '
    'repr(pyt.tree_unflatten(*pyt.tree_flatten(t))) for t in TREES]',
    '[repr(cxx.tree_map(str, t)) == repr(pyt.tree_map(str, t)) for t in TREES]',
    '[cxx.tree_structure(t).num_leaves == pyt.tree_structure(t).num_leaves for t in TREES]',
    'cxx.tree_leaves(Foo(1, [Foo(2, None), 3])) == pyt.tree_leaves(Foo(1, [Foo(2, None), 3]))',
    'cxx.tree_map_only(int, lambda x: -x, PLAIN) == pyt.tree_map_only(int, lambda x: -x, PLAIN)',
    '[cxx.tree_all(bool, t) == pyt.tree_all(bool, t) for t in TREES[:2] + [PLAIN]]',
]


def test_cxx_pytree_matches_reference(differential):
    require('torch')
    differential.check(SETUP, EXPRS)


def test_cxx_pytree_agrees_with_python_pytree(differential):
    require('torch')
    for ours, _ in differential.check(SETUP, AGREES_WITH_PYTHON_PYTREE):
        assert ours['ok'], ours
        assert 'False' not in ours['repr'], f'cxx and python pytrees disagree: {ours["repr"]}'


def test_cxx_pytree_under_torch_compile(tmp_path):
    """Dynamo loads its optree polyfills (it trusts our version) and traces through them."""
    require('torch')
    code = textwrap.dedent(
        """
        import torch
        import torch.utils._cxx_pytree as cxx

        @torch.compile(backend='eager', fullgraph=True)
        def f(tree):
            return cxx.tree_map(lambda x: x + 1, tree)

        out = f({'a': torch.ones(2), 'b': [torch.zeros(1)]})
        assert torch.equal(out['a'], torch.full((2,), 2.0)), out
        assert torch.equal(out['b'][0], torch.ones(1)), out
        print('ok')
        """,
    )
    proc = subprocess.run(
        [sys.executable, '-c', code],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,  # not the repository root, whose optree/ has no compiled core
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == 'ok'
    # torch never leaves its dict_insertion_ordered session: the exit must stay quiet.
    assert proc.stderr.strip() == '', proc.stderr[-3000:]
