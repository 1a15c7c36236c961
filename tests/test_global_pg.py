"""actornet.global_ and actornet.pg across real OS processes, with SIGKILL and partitions."""

from __future__ import annotations

import threading
from collections import Counter as Multiset
from collections.abc import Iterator
from typing import Any

import pytest

import actornet
from actornet import global_, pg, testing

from . import remote
from .cluster import COOKIE, Cluster, NodeProc, unique
from .helpers import wait_until


@pytest.fixture(autouse=True)
def node() -> Iterator[None]:
    """Overrides the suite's local node: the `local` named node is the default here."""
    yield None


@pytest.fixture
def local() -> Iterator[actornet.Node]:
    n = actornet.start_node(unique("t"), cookie=COOKIE, port=0, tick_time=1.5)
    try:
        yield n
    finally:
        n.stop()


def connected(cluster: Cluster, *names: str) -> list[NodeProc]:
    procs = [cluster.start(unique(n), extra=["--tick-time", "1.5"]) for n in names]
    for p in procs:
        assert actornet.ping(p.address) == "pong"
    return procs


def everywhere(nodes: list[NodeProc], fn: Any, *args: Any) -> list[Any]:
    """`fn(*args)` here and on every node."""
    return [fn(*args)] + [actornet.rpc.call(n.name, fn, *args) for n in nodes]


# -- global_ ---------------------------------------------------------------------------


def test_global_register_visible_everywhere_once_it_returns(local: actornet.Node,
                                                            cluster: Cluster) -> None:
    b, c = connected(cluster, "b", "c")
    wait_until(lambda: actornet.rpc.call(b.name, actornet.nodes) == sorted(
        [local.name, c.name]), what="full mesh")
    answer, pid = actornet.rpc.call(b.name, remote.global_register_new, "srv")
    assert answer == "yes"
    assert everywhere([b, c], remote.global_whereis, "srv") == [pid, pid, pid]
    assert "srv" in global_.registered_names()
    assert actornet.rpc.call(c.name, remote.global_register_new, "srv")[0] == "no"
    global_.send("srv", "hello")  # no error: it exists
    global_.unregister_name("srv")
    assert everywhere([b, c], remote.global_whereis, "srv") == [None, None, None]
    with pytest.raises(actornet.NoProc):
        global_.send("srv", "x")
    with pytest.raises(KeyError):
        global_.send("srv", "x")


def test_global_name_freed_when_process_dies_or_node_goes_down(local: actornet.Node,
                                                               cluster: Cluster) -> None:
    b, c = connected(cluster, "b", "c")
    _, pid = actornet.rpc.call(b.name, remote.global_register_new, "dies")
    actornet.exit(pid, "kill")
    wait_until(lambda: everywhere([c], remote.global_whereis, "dies") == [None, None])
    _, pid2 = actornet.rpc.call(b.name, remote.global_register_new, "on_b")
    assert global_.whereis_name("on_b") == pid2
    b.kill()
    wait_until(lambda: global_.whereis_name("on_b") is None, what="name of a dead node")
    wait_until(lambda: actornet.rpc.call(c.name, remote.global_whereis, "on_b") is None)


def test_late_joiner_gets_existing_names(local: actornet.Node, cluster: Cluster) -> None:
    me = actornet.self()
    assert global_.register_name("early", me) == "yes"
    late = cluster.start(unique("late"))
    assert actornet.ping(late.address) == "pong"
    wait_until(lambda: actornet.rpc.call(late.name, remote.global_whereis, "early") == me,
               what="the late node to learn the name")


def test_concurrent_registration_exactly_one_wins(local: actornet.Node,
                                                  cluster: Cluster) -> None:
    b, c = connected(cluster, "b", "c")
    wait_until(lambda: len(actornet.rpc.call(c.name, actornet.nodes)) == 2, what="mesh")
    names = [f"race{i}" for i in range(25)]
    answers: dict[str, list[str]] = {}

    def run(node: str) -> None:
        answers[node] = actornet.rpc.call(node, remote.global_race, names, timeout=60)

    threads = [threading.Thread(target=run, args=(n.name,)) for n in (b, c)]
    for t in threads:
        t.start()
    mine = remote.global_race(names)
    for t in threads:
        t.join(60)
    for i in range(len(names)):
        column = [mine[i], answers[b.name][i], answers[c.name][i]]
        assert column.count("yes") == 1, f"{names[i]}: {column}"
    for name in names:
        assert len(set(everywhere([b, c], remote.global_whereis, name))) == 1


def test_global_gen_server_name_call_and_send(local: actornet.Node, cluster: Cluster) -> None:
    (b,) = connected(cluster, "b")
    pid = actornet.rpc.call(b.name, remote.start_global_counter, "gcount")
    wait_until(lambda: global_.whereis_name("gcount") == pid)
    actornet.cast(("global", "gcount"), "inc")
    assert actornet.call(("global", "gcount"), "get") == 1
    actornet.send(("global", "gcount"), ("$gen_cast", "inc"))
    assert actornet.call(("global", "gcount"), "get") == 2
    with pytest.raises(actornet.NoProc):
        actornet.call(("global", "nobody"), "get")


def test_netsplit_conflict_resolved_on_merge(local: actornet.Node, cluster: Cluster) -> None:
    """{us, b} and {c} both register "leader" while split; on merge one keeps it."""
    b, c = connected(cluster, "b", "c")
    wait_until(lambda: len(actornet.rpc.call(b.name, actornet.nodes)) == 2, what="mesh")
    # c registers by itself once cut off (we cannot reach it during the split)
    actornet.rpc.call(c.name, remote.register_when_cut_off, "leader", [local.name, b.name])
    testing.partition([local.name, b.name], [c.name], heal_after=2.0)
    wait_until(lambda: c.name not in actornet.nodes(), what="the split")
    answer_b, pb = actornet.rpc.call(b.name, remote.global_register_watched, "leader")
    assert answer_b == "yes"
    wait_until(lambda: c.name in actornet.nodes(), what="the heal")
    answer_c, pc = wait_until(lambda: _holder(("result_leader", c.name)))
    assert answer_c == "yes", "each side had the name to itself"
    wait_until(lambda: len(set(everywhere([b, c], remote.global_whereis, "leader"))) == 1,
               what="the tables to converge")
    winner = global_.whereis_name("leader")
    loser = pc if winner == pb else pb
    assert winner == min([pb, pc], key=lambda p: (p.node, p.creation, p.id))
    reason = actornet.rpc.call(loser.node, remote.watched_reason, "leader")
    assert reason == ("global_name_conflict", "leader")
    assert actornet.is_alive(winner)


def _holder(server: tuple[str, str]) -> Any:
    try:
        return actornet.call(server, "get", timeout=2)
    except actornet.NoProc:
        return None


# -- pg --------------------------------------------------------------------------------


def test_pg_members_converge_and_duplicates_count(local: actornet.Node,
                                                  cluster: Cluster) -> None:
    b, c = connected(cluster, "b", "c")
    on_b = actornet.rpc.call(b.name, remote.pg_members, "room", 3)
    on_c = actornet.rpc.call(c.name, remote.pg_members, "room", 2)
    me = actornet.self()
    pg.join("room", me)
    pg.join("room", [me])  # twice: appears twice
    expected = Multiset([*on_b, *on_c, me, me])

    def converged() -> bool:
        return all(Multiset(m) == expected
                   for m in everywhere([b, c], remote.pg_get_members, "room"))

    wait_until(converged, what="pg members to converge")
    assert pg.get_local_members("room") == [me, me]
    assert "room" in pg.which_groups()
    assert pg.leave("room", me) == "ok"
    assert pg.get_local_members("room") == [me]
    assert pg.leave("room", [me]) == "ok"
    assert pg.leave("room", me) == "not_joined"
    actornet.exit(on_b[0], "kill")
    expected = Multiset([*on_b[1:], *on_c])
    wait_until(converged, what="a dead member to be removed everywhere")
    c.kill()
    expected = Multiset(on_b[1:])
    wait_until(lambda: Multiset(pg.get_members("room")) == expected
               and Multiset(actornet.rpc.call(b.name, remote.pg_get_members, "room"))
               == expected, what="a dead node's members to be removed")


def test_pg_monitor_join_leave_events_in_order(local: actornet.Node, cluster: Cluster) -> None:
    (b,) = connected(cluster, "b")
    ref, members = pg.monitor("watched")
    assert members == []
    remote_pids = actornet.rpc.call(b.name, remote.pg_members, "watched", 2)
    got: list[Any] = []
    while len(got) < 2:
        msg = actornet.receive(lambda m: m[0] == "pg" and m[1] == ref, timeout=10)
        got.append(msg)
    assert [(m[2], m[3]) for m in got] == [("join", "watched")] * 2
    assert [m[4] for m in got] == [[remote_pids[0]], [remote_pids[1]]], "in join order"
    actornet.exit(remote_pids[0], "kill")
    msg = actornet.receive(lambda m: m[0] == "pg" and m[1] == ref, timeout=10)
    assert msg == ("pg", ref, "leave", "watched", [remote_pids[0]])
    assert pg.demonitor(ref) is True
    actornet.exit(remote_pids[1], "kill")
    wait_until(lambda: pg.get_members("watched") == [])
    with pytest.raises(TimeoutError):
        actornet.receive(lambda m: m[0] == "pg", timeout=0.2)


def test_pg_scopes_are_independent_and_join_errors(local: actornet.Node,
                                                   cluster: Cluster) -> None:
    (b,) = connected(cluster, "b")
    pg.start("chat")
    actornet.rpc.call(b.name, remote.start_scope, "chat")
    in_chat = actornet.rpc.call(b.name, remote.pg_members, "g", 1, "chat")
    wait_until(lambda: pg.get_members("g", "chat") == in_chat)
    assert pg.get_members("g") == [], "the default scope does not see scope 'chat'"
    with pytest.raises(ValueError, match="not a local process"):
        pg.join("g", in_chat[0])
    dead, ref = actornet.spawn_monitor(lambda: None)
    actornet.receive(lambda m: m[1] == ref, timeout=5)
    with pytest.raises(actornet.NoProc):
        pg.join("g", dead)
    with pytest.raises(actornet.NoProc, match="not running"):
        pg.get_members("g", "no_such_scope")


def test_pg_partition_heals_and_memberships_return(local: actornet.Node,
                                                   cluster: Cluster) -> None:
    b, c = connected(cluster, "b", "c")
    wait_until(lambda: len(actornet.rpc.call(b.name, actornet.nodes)) == 2, what="mesh")
    on_b = actornet.rpc.call(b.name, remote.pg_members, "split", 1)
    on_c = actornet.rpc.call(c.name, remote.pg_members, "split", 1)
    wait_until(lambda: Multiset(actornet.rpc.call(b.name, remote.pg_get_members, "split"))
               == Multiset(on_b + on_c))
    testing.partition([b.name], [c.name])
    wait_until(lambda: actornet.rpc.call(b.name, remote.pg_get_members, "split") == on_b,
               what="b to drop c's members during the split")
    more_c = actornet.rpc.call(c.name, remote.pg_members, "split", 1)
    testing.heal_partition([b.name], [c.name])
    wait_until(lambda: Multiset(actornet.rpc.call(b.name, remote.pg_get_members, "split"))
               == Multiset(on_b + on_c + more_c), what="memberships after the heal")
