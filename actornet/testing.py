"""Fault injection for tests: cut and heal the links between nodes.

A cut link drops everything in both directions and both ends see the other go
down (``noconnection``), as in a real network partition; healing lets them
connect again. Each function acts on the nodes named, through `rpc` for nodes
other than the current one.

Example (a three-node cluster split into {a} and {b, c}, then healed)::

    from actornet import testing
    testing.partition(["a@127.0.0.1"], ["b@127.0.0.1", "c@127.0.0.1"])
    ...
    testing.heal_partition(["a@127.0.0.1"], ["b@127.0.0.1", "c@127.0.0.1"])
"""

from __future__ import annotations

from actornet import net_kernel, rpc
from actornet.node import current_node

__all__ = ["cut", "heal", "partition", "heal_partition"]


def cut(node: str, heal_after: float | None = None) -> None:
    """Cut the link between the current node and `node`, both ways from this side.

    With `heal_after` seconds, the cut heals by itself and this node reconnects.

    Example (``b`` being a connected node)::

        testing.cut("b@127.0.0.1")
        assert "b@127.0.0.1" not in actornet.nodes()   # once its nodedown is seen
        testing.heal("b@127.0.0.1")
    """
    current_node().transport().cut(node, heal_after)


def heal(node: str) -> None:
    """Allow the current node and `node` to talk again, and connect.

    Example::

        testing.heal("b@127.0.0.1")   # after testing.cut("b@127.0.0.1")
    """
    here = current_node()
    here.transport().heal(node)


def _on(node: str, fn: object, *args: object) -> None:
    """Run `fn(*args)` on `node` without waiting for it: a node that cuts itself
    off from us could not send a result back."""
    if node == current_node().name:
        fn(*args)  # type: ignore[operator]
    else:
        rpc.spawn(node, fn, args, link=False)  # type: ignore[arg-type]


def partition(side_a: list[str], side_b: list[str], heal_after: float | None = None) -> None:
    """Cut every link between a node of `side_a` and a node of `side_b`.

    Run it from any node; remote nodes are told first (each starts cutting
    as soon as told, asynchronously) and the current node last, so the links
    needed to tell them are still up when used; wait for the split with
    `actornet.nodes()`. To heal
    with `heal_partition`, run it from a node in neither side; or give
    `heal_after` seconds and every cut heals by itself, the sides reconnecting.

    Example (run from a fourth node, hidden or not, that stays connected to all)::

        testing.partition(["a@127.0.0.1", "b@127.0.0.1"], ["c@127.0.0.1"])
    """
    _everywhere(side_a, side_b, _cut_all, heal_after)


def heal_partition(side_a: list[str], side_b: list[str]) -> None:
    """Undo `partition` and reconnect the two sides (run it from a node that can
    still reach both, e.g. one in neither side).

    Example::

        testing.heal_partition(["a@127.0.0.1", "b@127.0.0.1"], ["c@127.0.0.1"])
    """
    _everywhere(side_a, side_b, _heal_all, None)
    for a in side_a:
        for b in side_b:
            _on(a, net_kernel.ping, b)


def _everywhere(side_a: list[str], side_b: list[str], fn: object,
                heal_after: float | None) -> None:
    here = current_node().name
    plan = [(a, side_b) for a in side_a] + [(b, side_a) for b in side_b]
    for node, others in sorted(plan, key=lambda p: p[0] == here):
        _on(node, fn, heal_after, *others)


def _cut_all(heal_after: float | None, *nodes: str) -> None:
    for n in nodes:
        cut(n, heal_after)


def _heal_all(_: None, *nodes: str) -> None:
    for n in nodes:
        heal(n)
