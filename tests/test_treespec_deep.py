"""Treespecs of any depth: compose, transform and treespec_from_collection build them, and every
walk over a treespec is iterative, so none of them recurses on the C stack.

As in optree 0.20.0, paths(), accessors() and broadcast_to_common_suffix() raise RecursionError
below MAX_RECURSION_DEPTH levels, and unpickling is still capped (pickle.cpp).
"""

from __future__ import annotations

import pickle
import threading

import pytest

import optree

DEPTH = 100_000
LIMIT = optree.MAX_RECURSION_DEPTH

# A chain of `depth` one-element lists around a leaf, by binary composition: fast to build at any
# depth (nesting treespec_list calls copies the spec at every level). Shared by the snippets run
# on both sides.
CHAIN = """
def chain(depth, none=False):
    spec = optree.tree_structure(None) if none else optree.tree_structure(0)
    power = optree.tree_structure([0])
    while depth:
        if depth & 1:
            spec = power.compose(spec)
        power = power.compose(power)
        depth >>= 1
    return spec
"""
namespace: dict[str, object] = {'optree': optree}
exec(CHAIN, namespace)
chain = namespace['chain']


def run_in_thread(function, stack_size: int) -> None:
    """Runs `function` in a thread with a small C stack, re-raising what it raises."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            function()
        except BaseException as error:  # re-raised below
            errors.append(error)

    previous = threading.stack_size(stack_size)
    try:
        thread = threading.Thread(target=run)
        thread.start()
    finally:
        threading.stack_size(previous)
    thread.join()
    if errors:
        raise errors[0]


def exercise_structure(spec: optree.PyTreeSpec) -> None:
    """The walks that make no deep Python object."""
    depth = spec.num_nodes - 1
    text = repr(spec)
    assert text == 'PyTreeSpec(' + '[' * depth + '*' + ']' * depth + ')'
    # The same structure, composed in another order: equal, and equal hashes.
    other = chain(depth // 3).compose(chain(depth - depth // 3))
    assert other is not spec
    assert spec == other
    assert not spec != other
    assert hash(spec) == hash(other)
    assert spec != chain(depth - 1)
    assert spec.transform() == spec
    assert spec.transform(lambda node: node, lambda leaf: leaf) == spec
    as_tuples = spec.transform(lambda node: optree.treespec_tuple([optree.treespec_leaf()]))
    assert as_tuples.num_nodes == spec.num_nodes
    assert repr(as_tuples) == 'PyTreeSpec(' + '(' * depth + '*' + ',)' * depth + ')'
    assert spec.children() == [chain(depth - 1)]
    assert spec.child(0) == chain(depth - 1)
    assert spec.entries() == [0]
    assert spec.entry(0) == 0
    assert spec.is_prefix(spec)
    assert spec.is_suffix(spec)
    assert chain(depth - 1).is_prefix(spec, strict=True)
    assert spec <= spec
    assert not spec < spec
    assert spec.compose(optree.tree_structure([0])).num_nodes == spec.num_nodes + 1
    assert optree.treespec_list([spec]).num_nodes == spec.num_nodes + 1
    assert spec.one_level() == optree.tree_structure([0])
    leaf = optree.tree_structure(0)
    assert spec.broadcast_to_common_suffix(leaf) == spec
    assert leaf.broadcast_to_common_suffix(spec) == spec


def exercise_objects(spec: optree.PyTreeSpec) -> None:
    """The walks that make (and free) a deep Python object."""
    depth = spec.num_nodes - 1
    # Deep objects are checked level by level: comparing them would recurse in CPython.
    tree = spec.unflatten([1])
    assert unwrap(tree, list) == (depth, 1)
    assert spec.flatten_up_to(tree) == [1]
    folded = spec.walk([1], lambda _type, _metadata, children: children)
    assert unwrap(folded, tuple) == (depth, 1)
    mapped = spec.traverse([2], lambda node: node, lambda leaf: leaf * 3)
    assert unwrap(mapped, list) == (depth, 6)


def unwrap(tree: object, kind: type) -> tuple[int, object]:
    """(levels, innermost value) of nested one-element containers of type `kind`."""
    levels = 0
    while type(tree) is kind:
        assert len(tree) == 1  # type: ignore[arg-type]
        tree = tree[0]  # type: ignore[index]
        levels += 1
    return levels, tree


def test_deep_treespecs_work_on_a_small_stack():
    spec = chain(DEPTH)
    assert spec.num_nodes == DEPTH + 1
    # 256 KiB of C stack: no walk may recurse once per level.
    run_in_thread(lambda: exercise_structure(spec), 256 * 1024)


def test_deep_treespecs_rebuild_deep_objects():
    # On the main thread: CPython 3.13 itself overflows a small thread stack freeing a list
    # nested 100,000 deep.
    exercise_objects(chain(DEPTH))


def test_treespec_list_nesting_builds_beyond_the_old_cap():
    spec = optree.tree_structure(0)
    for _ in range(4 * LIMIT + 10):
        spec = optree.treespec_list([spec])
    assert spec == chain(4 * LIMIT + 10)
    assert hash(spec) == hash(chain(4 * LIMIT + 10))


def test_deep_transform_output_and_from_collection():
    spec = chain(2 * LIMIT)
    grown = spec.transform(None, lambda leaf: chain(3 * LIMIT))
    assert grown == chain(5 * LIMIT)
    boxed = optree.treespec_from_collection([spec, spec])
    assert boxed.num_nodes == 2 * spec.num_nodes + 1
    assert boxed.children() == [spec, spec]


@pytest.mark.parametrize('depth', [LIMIT, LIMIT + 1])
def test_bounded_walks_agree_with_the_reference_at_the_limit(differential, depth):
    setup = CHAIN + f'spec = chain({depth})\nnone = chain({depth}, none=True)\n'
    differential.check(
        setup,
        [
            'spec.paths() == [(0,) * (spec.num_nodes - 1)]',
            'len(spec.accessors())',
            'spec.broadcast_to_common_suffix(spec) == spec',
            f'spec.broadcast_to_common_suffix(chain({LIMIT // 2})) == spec',
            f'chain({LIMIT // 2}).broadcast_to_common_suffix(spec) == spec',
            # No leaf, no path: optree answers before walking.
            'none.paths()',
            'none.accessors()',
        ],
        check_message=True,
    )


def test_deep_operations_agree_with_the_reference(differential):
    depth = 20_000
    setup = CHAIN + f'spec = chain({depth})\nother = chain(7).compose(chain({depth - 7}))\n'
    differential.check(
        setup,
        [
            'len(repr(spec))',
            'spec == other',
            'hash(spec) == hash(other)',
            'spec.walk([1], lambda _type, _metadata, children: len(children))',
            'spec.traverse([1], lambda node: len(node), lambda leaf: leaf + 1)',
            'spec.flatten_up_to(spec.unflatten([5]))',
            'spec.transform(lambda s: s, lambda s: s) == spec',
            'spec.transform(None, lambda s: optree.tree_structure((0, 0))).num_leaves',
            'spec.child(0) == chain(spec.num_nodes - 2)',
            'spec.is_prefix(other, strict=True), other.is_prefix(spec)',
            'optree.treespec_list([spec, spec]).num_nodes',
            'spec.compose(spec).num_nodes',
            'len(spec.paths())',
            'spec.broadcast_to_common_suffix(spec)',
        ],
        check_message=True,
    )


def _chain_state(depth: int) -> tuple:
    """optree 0.20.0's pickle state of `depth` levels: one-element lists around a leaf."""
    leaf, list_kind = int(optree.PyTreeKind.LEAF), int(optree.PyTreeKind.LIST)
    nodes = [(leaf, 0, None, None, None, 1, 1, None)]
    nodes += [(list_kind, 1, None, None, None, 1, n, None) for n in range(2, depth + 1)]
    return (tuple(nodes), False, '')


def _setstate(state: tuple) -> optree.PyTreeSpec:
    spec = optree.PyTreeSpec.__new__(optree.PyTreeSpec)
    spec.__setstate__(state)
    return spec


def test_crafted_deep_pickle_state_loads():
    # Loading walks the node states in a loop: no depth cap, whatever the C stack.
    assert _setstate(_chain_state(2)) == optree.tree_structure([1])
    holder: list[optree.PyTreeSpec] = []
    run_in_thread(lambda: holder.append(_setstate(_chain_state(DEPTH + 1))), 256 * 1024)
    assert holder[0] == chain(DEPTH)


def test_pickle_state_of_a_deep_spec_is_flat():
    # Saving walks the nodes in a loop too: the state is a flat tuple, whatever the depth.
    spec = chain(DEPTH)
    states: list[tuple] = []
    run_in_thread(lambda: states.append(spec.__getstate__()), 256 * 1024)
    assert states[0] == _chain_state(DEPTH + 1)
    assert _setstate(states[0]) == spec
    assert pickle.loads(pickle.dumps(spec, protocol=pickle.HIGHEST_PROTOCOL)) == spec
