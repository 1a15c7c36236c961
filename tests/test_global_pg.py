"""actornet.global_ and actornet.pg across real OS processes, with SIGKILL and partitions."""

from __future__ import annotations

import importlib
from collections import Counter as Multiset
from collections.abc import Iterator
from typing import Any

import pytest

import actornet
from actornet import _kernel, _pg_scope, global_, pg, testing
from actornet._steps import MultiCall

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


@pytest.fixture
def hidden() -> Iterator[actornet.Node]:
    """A hidden local node: it drives the test (rpc, partitions) from outside the
    cluster, being in no node's `nodes()` and so in no global lock or table."""
    n = actornet.start_node(unique("t"), cookie=COOKIE, port=0, tick_time=1.5, hidden=True)
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


def on_each(nodes: list[NodeProc], fn: Any, *args: Any) -> list[Any]:
    """`fn(*args)` on every node given (not here)."""
    return [actornet.rpc.call(n.name, fn, *args) for n in nodes]


def meshed(cluster: Cluster, *names: str) -> list[NodeProc]:
    """Child nodes connected to each other (and to the hidden local node)."""
    procs = [cluster.start(unique(n), extra=["--tick-time", "1.5"]) for n in names]
    for i, p in enumerate(procs):
        assert actornet.ping(p.address) == "pong"
        for q in procs[i + 1:]:
            assert actornet.rpc.call(p.name, actornet.ping, q.address) == "pong"
    for p in procs:
        others = sorted(q.name for q in procs if q is not p)
        wait_until(lambda p=p, others=others: actornet.rpc.call(p.name, actornet.nodes)
                   == others, what=f"{p.name} to see the others")
    return procs


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


def racer(coordinator: actornet.Pid, rounds: int) -> None:
    """Each round: say ready, wait for the go, register a fresh process, report."""
    for r in range(rounds):
        actornet.send(coordinator, ("ready", r))
        actornet.receive(lambda m, r=r: m == ("go", r), timeout=30)
        answer, pid = remote.global_register_new(f"race{r}")
        actornet.send(coordinator, ("got", r, actornet.node(), answer, pid))


def start_racer(coordinator: actornet.Pid, rounds: int) -> actornet.Pid:
    return actornet.spawn(racer, coordinator, rounds)


def test_concurrent_registration_exactly_one_wins(local: actornet.Node,
                                                  cluster: Cluster) -> None:
    """Three nodes register one name at once (each round starts on a go sent once all
    are ready): exactly one "yes", and every node sees the winner once it returned."""
    b, c = connected(cluster, "b", "c")
    wait_until(lambda: len(actornet.rpc.call(c.name, actornet.nodes)) == 2, what="mesh")
    rounds = 100
    me = actornet.self()
    racers = [start_racer(me, rounds), *on_each([b, c], start_racer, me, rounds)]
    for r in range(rounds):
        for _ in racers:
            actornet.receive(lambda m, r=r: m == ("ready", r), timeout=10)
        for pid in racers:
            actornet.send(pid, ("go", r))
        got = [actornet.receive(lambda m, r=r: m[:2] == ("got", r), timeout=20)
               for _ in racers]
        answers = {node: (answer, pid) for _, _, node, answer, pid in got}
        winners = [pid for answer, pid in answers.values() if answer == "yes"]
        assert len(answers) == 3 and len(winners) == 1, f"round {r}: {answers}"
        assert everywhere([b, c], remote.global_whereis, f"race{r}") == winners * 3


def test_a_registration_does_not_wait_on_a_peer_that_went_down_during_it(
        local: actornet.Node, cluster: Cluster) -> None:
    """A peer that hangs (SIGSTOP) while a registration takes its locks is declared down
    (a tick), and the registration then completes without it: it does not call that
    peer again, which would reconnect and wait out the handshake timeout (5 s) on a
    node that accepts connections but never answers."""
    import signal
    import time

    (b,) = connected(cluster, "b")
    wait_until(lambda: b.name in actornet.nodes(), what="b connected")
    b.signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        assert global_.register_name("while_b_hangs", actornet.self()) == "yes"
        took = time.monotonic() - started
        detection = 1.5 * 1.25  # the tick, and the check's period after it
        assert took < detection + 2.0, f"the registration took {took:.1f} s"
        assert global_.whereis_name("while_b_hangs") == actornet.self()
    finally:
        b.signal(signal.SIGCONT)


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


def register_watched(name: str, resolve: str | None) -> tuple[str, actornet.Pid]:
    """`remote.global_register_watched`, with the resolve function named ``module:qualname``."""
    fn = None
    if resolve is not None:
        module, _, qualname = resolve.partition(":")
        fn = getattr(importlib.import_module(module), qualname)
    pid = actornet.spawn(remote.wait_forever)
    remote._Watcher.start(pid, name=f"watch_{name}")
    return global_.register_name(name, pid, resolve=fn), pid


_resolve_runs: list[Any] = []


def keep_on_last_node(name: Any, pid1: actornet.Pid, pid2: actornet.Pid) -> actornet.Pid:
    """A custom resolve: the opposite of the default, and its own exit reason."""
    _resolve_runs.append((name, actornet.node()))
    keep, lose = sorted((pid1, pid2), key=lambda p: p.node, reverse=True)
    actornet.exit(lose, ("lost_to", keep))
    return keep


def resolve_runs() -> list[Any]:
    return list(_resolve_runs)


def split_register_heal(cluster: Cluster, resolve: str | None,
                        ) -> tuple[list[NodeProc], actornet.Pid, actornet.Pid]:
    """Nodes a, b, c split into {a, b} and {c}; b and c register "leader" (watched),
    each side confirms it, then the split heals; wait until every table agrees."""
    a, b, c = nodes = meshed(cluster, "a", "b", "c")
    testing.partition([a.name, b.name], [c.name])
    wait_until(lambda: actornet.rpc.call(b.name, actornet.nodes) == [a.name]
               and actornet.rpc.call(c.name, actornet.nodes) == [], what="the split")
    answer_b, pb = actornet.rpc.call(b.name, register_watched, "leader", resolve)
    answer_c, pc = actornet.rpc.call(c.name, register_watched, "leader", resolve)
    assert (answer_b, answer_c) == ("yes", "yes"), "each side had the name to itself"
    assert on_each(nodes, remote.global_whereis, "leader") == [pb, pb, pc]
    testing.heal_partition([a.name, b.name], [c.name])

    def converged() -> bool:
        held = on_each(nodes, remote.global_whereis, "leader")
        return held[0] is not None and len(set(held)) == 1

    wait_until(converged, what="the tables to converge on one pid")
    return nodes, pb, pc


def test_netsplit_conflict_resolved_on_merge(hidden: actornet.Node, cluster: Cluster) -> None:
    """By default the pid that sorts first keeps the name; the other gets an exit."""
    (a, b, c), pb, pc = split_register_heal(cluster, None)
    assert on_each([a, b, c], remote.global_whereis, "leader") == [pb] * 3
    assert actornet.rpc.call(c.name, remote.watched_reason, "leader") == (
        "global_name_conflict", "leader")
    assert actornet.rpc.call(b.name, actornet.is_alive, pb)
    assert not actornet.rpc.call(c.name, actornet.is_alive, pc)


def test_netsplit_custom_resolve_settled_once_everywhere(hidden: actornet.Node,
                                                         cluster: Cluster) -> None:
    """b and c register with a custom resolve; a (whose name sorts first, and which never
    registered) also finds the conflict: every node must still follow the function."""
    (a, b, c), pb, pc = split_register_heal(cluster, f"{__name__}:keep_on_last_node")
    assert on_each([a, b, c], remote.global_whereis, "leader") == [pc] * 3
    assert actornet.rpc.call(b.name, remote.watched_reason, "leader") == ("lost_to", pc)
    assert actornet.rpc.call(c.name, actornet.is_alive, pc)
    assert not actornet.rpc.call(b.name, actornet.is_alive, pb)
    runs = [run for runs in on_each([a, b, c], resolve_runs) for run in runs]
    assert runs == [("leader", b.name)], "run once, by the node of the pid sorting first"


def test_a_name_unregistered_during_a_split_stays_gone_after_the_heal(
    hidden: actornet.Node, cluster: Cluster
) -> None:
    """b registers a name for a process of a node outside the cluster (as a chat node
    registers its clients' nicknames), so no node drops it for a nodedown; c is cut off;
    b unregisters it, which only a and b hear. After the heal c's stale copy must neither
    come back on a and b nor stay on c: the registration's home, b, is the authority."""
    a, b, c = nodes = meshed(cluster, "a", "b", "c")
    pid = actornet.spawn(remote.wait_forever)  # on the hidden node, connected to all three
    assert actornet.rpc.call(b.name, global_.register_name, "gone", pid) == "yes"
    assert on_each(nodes, remote.global_whereis, "gone") == [pid] * 3
    testing.partition([a.name, b.name], [c.name])
    wait_until(lambda: actornet.rpc.call(b.name, actornet.nodes) == [a.name]
               and actornet.rpc.call(c.name, actornet.nodes) == [], what="the split")
    actornet.rpc.call(b.name, global_.unregister_name, "gone")
    assert on_each(nodes, remote.global_whereis, "gone") == [None, None, pid]
    # a name registered on c meanwhile is c's to keep, and reaches a and b
    answer_c, pc = actornet.rpc.call(c.name, remote.global_register_new, "kept")
    assert answer_c == "yes"
    testing.heal_partition([a.name, b.name], [c.name])
    wait_until(lambda: on_each(nodes, remote.global_whereis, "kept") == [pc] * 3,
               what="c's new name to reach a and b")
    wait_until(lambda: on_each(nodes, remote.global_whereis, "gone") == [None] * 3,
               what="the unregistered name to be gone everywhere")
    assert actornet.is_alive(pid), "only the name went"


@pytest.mark.parametrize("reconnects", ["while_locked", "before_the_lock"])
def test_a_peer_that_reconnects_during_an_unregister_does_not_keep_the_name(
        local: actornet.Node, cluster: Cluster, reconnects: str) -> None:
    """The short soak once ended with a name held on one node only, for good. Its home
    unregistered it in a lock round whose call to a peer was lost (the peer had declared
    the home down, during a pause, and was reconnecting); the peer came back while the
    round ran and got the home's table, name and all, before the write; the write then
    went to the servers that had granted the lock, not to the peer; and the process's
    death later told nobody, its name being gone at home. The round is run here step by
    step (global_'s own steps), with b reconnecting either while the name is locked here
    or just before the lock is taken (after the round's servers were chosen)."""
    from actornet import _gen

    (b,) = connected(cluster, "b")
    wait_until(lambda: b.name in actornet.nodes(), what="b connected")
    pid = actornet.spawn(remote.wait_forever)
    assert global_.register_name("moved", pid) == "yes"

    def held_on_b() -> Any:
        return actornet.rpc.call(b.name, remote.global_whereis, "moved")

    assert held_on_b() == pid

    def cut_b() -> None:
        testing.cut(b.name)
        wait_until(lambda: b.name not in actornet.nodes(), what="b down")

    def reconnect_b() -> None:
        # b dropped the name at its nodedown (the pid is of this node); holding it again
        # proves it merged this node's table, sent on its nodeup, before the write
        testing.heal(b.name)
        # connected again first: a call made while the cut connection is still being torn
        # down fails with NodeDown rather than waiting
        wait_until(lambda: actornet.ping(b.address) == "pong", what="b reachable again")
        wait_until(lambda: held_on_b() == pid, what="b to get this node's table")

    steps = global_.unregister_name_steps("moved")
    if reconnects == "before_the_lock":
        cut_b()
    lock = next(steps)
    assert isinstance(lock, MultiCall) and lock.request[0] == "lock"
    if reconnects == "while_locked":
        assert len(lock.servers) == 2, "b is in the round"
        cut_b()
    results = _gen.multi_call(lock.servers, lock.request, lock.timeout)
    assert results[0] == ("reply", ("ok", pid))
    if reconnects == "while_locked":
        assert results[1][0] == "down", "b's lock is lost with its connection"
        reconnect_b()
    else:
        assert len(lock.servers) == 1, "b was not connected when the round began"
        reconnect_b()
    write = steps.send(results)
    assert isinstance(write, MultiCall) and write.request == ("unregister", "moved")
    assert write.servers == [lock.servers[0]], "written here only"
    with pytest.raises(StopIteration):
        steps.send(_gen.multi_call(write.servers, write.request, write.timeout))
    assert global_.whereis_name("moved") is None
    actornet.exit(pid, "kill")  # as the soak's worker did: its death must not matter
    wait_until(lambda: held_on_b() is None, timeout=5.0,
               what="b to drop the name unregistered at its home")
    assert global_.register_name("moved", actornet.self()) == "yes", "free everywhere"
    assert held_on_b() == actornet.self()


def test_resolve_must_be_importable_everywhere(local: actornet.Node) -> None:
    me = actornet.self()

    def closure(name: Any, pid1: actornet.Pid, pid2: actornet.Pid) -> actornet.Pid:
        return pid1

    for bad in (lambda name, p1, p2: p1, closure, "no_such_module:fn"):
        with pytest.raises(TypeError, match="resolve"):
            global_.register_name("strict", me, resolve=bad)  # type: ignore[arg-type]
    assert global_.whereis_name("strict") is None, "refused before registering"
    assert global_.register_name("strict", me, resolve=global_.notify_all_name) == "yes"
    assert global_.register_name("strict2", me, resolve=f"{__name__}:keep_on_last_node") == "yes"


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

    def views() -> list[Multiset[actornet.Pid]]:
        return [Multiset(m) for m in everywhere([b, c], remote.pg_get_members, "split")]

    wait_until(lambda: views() == [Multiset(on_b + on_c)] * 3, what="members before the split")
    testing.partition([b.name], [c.name])
    wait_until(lambda: views()[1:] == [Multiset(on_b), Multiset(on_c)],
               what="each side to drop the other's members during the split")
    more_b = actornet.rpc.call(b.name, remote.pg_members, "split", 1)
    more_c = actornet.rpc.call(c.name, remote.pg_members, "split", 1)
    wait_until(lambda: views()[1:] == [Multiset(on_b + more_b), Multiset(on_c + more_c)],
               what="each side's joins during the split, on that side only")
    testing.heal_partition([b.name], [c.name])
    everyone = Multiset(on_b + on_c + more_b + more_c)
    wait_until(lambda: views() == [everyone] * 3, what="memberships after the heal, everywhere")


def join_many(group: Any, count: int, leave: int) -> list[actornet.Pid]:
    """Start `count` processes here, join them all in one call, then remove the first
    `leave` of them in one call."""
    pids = [actornet.spawn(remote.wait_forever) for _ in range(count)]
    pg.join(group, pids)
    assert pg.leave(group, pids[:leave]) == "ok"
    return pids


def which_groups() -> list[Any]:
    return pg.which_groups()


def test_pg_join_and_leave_many_at_once(local: actornet.Node, cluster: Cluster) -> None:
    b, c = connected(cluster, "b", "c")
    on_b = actornet.rpc.call(b.name, join_many, "many", 5, 2)
    mine = [actornet.spawn(remote.wait_forever) for _ in range(4)]
    pg.join("many", mine)
    assert pg.get_local_members("many") == mine
    assert pg.leave("many", [mine[0], mine[2]]) == "ok"
    assert pg.get_local_members("many") == [mine[1], mine[3]]
    assert pg.leave("many", [mine[0], mine[2]]) == "not_joined"
    expected = Multiset([*on_b[2:], mine[1], mine[3]])
    wait_until(lambda: all(Multiset(m) == expected
                           for m in everywhere([b, c], remote.pg_get_members, "many")),
               what="many joins and leaves to converge")
    assert actornet.rpc.call(c.name, remote.pg_get_members, "many") != []
    actornet.rpc.call(c.name, remote.pg_members, "only_on_c", 1)
    wait_until(lambda: {"many", "only_on_c"} <= set(actornet.rpc.call(b.name, which_groups)),
               what="which_groups on b to list c's group")
    assert actornet.rpc.call(c.name, remote.pg_get_members, "only_on_c") != []


def pg_changes(group: Any) -> list[actornet.Pid]:
    """Make four changes to `group` here, in this order; the three pids used."""
    p1, p2, p3 = (actornet.spawn(remote.wait_forever) for _ in range(3))
    pg.join(group, p1)
    pg.join(group, [p2, p3])
    pg.leave(group, p1)
    pg.leave(group, [p2])
    return [p1, p2, p3]


def test_pg_monitor_non_empty_group(local: actornet.Node, cluster: Cluster) -> None:
    """`monitor` returns the members already there, then every change, local or
    remote, in the order it happened on the member's node."""
    (b,) = connected(cluster, "b")
    before_b = actornet.rpc.call(b.name, remote.pg_members, "busy", 2)
    here = actornet.spawn(remote.wait_forever)
    pg.join("busy", here)
    wait_until(lambda: len(pg.get_members("busy")) == 3, what="b's members here")
    ref, members = pg.monitor("busy")
    assert Multiset(members) == Multiset([*before_b, here])

    def events(count: int) -> list[tuple[str, list[actornet.Pid]]]:
        got = [actornet.receive(lambda m: m[:2] == ("pg", ref), timeout=10)
               for _ in range(count)]
        assert all(m[3] == "busy" for m in got)
        return [(m[2], m[4]) for m in got]

    p1, p2, p3 = actornet.rpc.call(b.name, pg_changes, "busy")
    assert events(4) == [("join", [p1]), ("join", [p2, p3]), ("leave", [p1]), ("leave", [p2])]
    q = actornet.spawn(remote.wait_forever)
    pg.join("busy", [q, here])
    pg.leave("busy", here)
    actornet.exit(before_b[0], "kill")
    assert events(3) == [("join", [q, here]), ("leave", [here]), ("leave", [before_b[0]])]
    assert Multiset(pg.get_members("busy")) == Multiset([before_b[1], p3, here, q])
    assert pg.demonitor(ref) is True


def start_linked_scope(parent: actornet.Pid, scope: str) -> None:
    """A process that starts `scope` linked to itself, says so, and waits."""
    pg.start_link(scope)
    actornet.send(parent, ("started", scope))
    remote.wait_forever()


def test_pg_start_link_scope_dies_with_its_starter(local: actornet.Node,
                                                    cluster: Cluster) -> None:
    (b,) = connected(cluster, "b")
    actornet.rpc.call(b.name, remote.start_scope, "linked")
    starter = actornet.spawn(start_linked_scope, actornet.self(), "linked")
    actornet.receive(lambda m: m == ("started", "linked"), timeout=10)
    member = actornet.spawn(remote.wait_forever)
    pg.join("g", member, "linked")
    wait_until(lambda: actornet.rpc.call(b.name, remote.pg_get_members, "g", "linked")
               == [member], what="the member on b")
    assert pg.get_members("g") == [], "the default scope is another scope"
    actornet.exit(starter, "kill")

    def scope_gone() -> bool:
        try:
            pg.get_members("g", "linked")
        except actornet.NoProc:
            return True
        return False

    wait_until(scope_gone, what="the linked scope to stop with its starter")
    wait_until(lambda: actornet.rpc.call(b.name, remote.pg_get_members, "g", "linked") == [],
               what="b to drop the members of the stopped scope")
    assert actornet.is_alive(member), "the scope stopping does not stop its members"


# -- system servers survive what they do not understand (issue 12, class 6) ----------------

MALFORMED = [(), 42, "text", ("table",), ("dead", "x"), ("table", "b@h", [("n", 1, None, 2)],
             "not a pid", [], True), ("conflict", ["unhashable"], 1, 2), ("join", "not a pid"),
             ("sync", actornet.Pid("x@h", 1, 1), [("g", ["not a pid"])]), ("DOWN",)]


def test_the_name_server_drops_what_it_does_not_understand_and_resyncs_after_a_crash(
    local: actornet.Node, cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A node may send a name server anything. One malformed message used to crash it; it
    came back empty and never asked for the cluster's table, so `whereis_name` here
    disagreed with every other node for good. Now each such message is logged and dropped
    (the same server goes on), and a server that crashes all the same (here: killed) is
    restarted by the node's kernel supervisor and fills its table from its peers."""
    [b] = connected(cluster, "b")
    answer, pid = actornet.rpc.call(b.name, remote.global_register_new, "keeper")
    assert answer == "yes" and global_.whereis_name("keeper") == pid
    mine = actornet.spawn(actornet.receive)
    assert global_.register_name("mine", mine) == "yes"
    server = local.whereis(global_.SERVER)
    for bad in MALFORMED:
        actornet.rpc.call(b.name, actornet.send, (global_.SERVER, local.name), bad)
        actornet.send(global_.SERVER, bad)
        actornet.cast(global_.SERVER, bad)
        with pytest.raises(actornet.BadArg):
            actornet.call(global_.SERVER, bad)
    # Both kinds of senders done: a call behind them proves the server read them all.
    assert actornet.call(global_.SERVER, ("unregister", "never registered")) == "ok"
    assert local.whereis(global_.SERVER) == server, "the name server crashed"
    assert global_.whereis_name("keeper") == pid and global_.whereis_name("mine") == mine
    assert any("does not understand" in r.getMessage() for r in caplog.records)

    actornet.exit(server, "kill")
    wait_until(lambda: local.whereis(global_.SERVER) not in (None, server), what="a restart")
    wait_until(lambda: global_.whereis_name("keeper") == pid, what="the table to come back")
    wait_until(lambda: global_.whereis_name("mine") == mine, what="this node's own names")
    assert actornet.rpc.call(b.name, remote.global_whereis, "mine") == mine
    # and the restarted server takes part in registrations as before
    answer, other = actornet.rpc.call(b.name, remote.global_register_new, "after")
    assert answer == "yes" and global_.whereis_name("after") == other
    assert global_.register_name("keeper", actornet.self()) == "no"


def test_the_pg_scope_drops_what_it_does_not_understand_and_resyncs_after_a_crash(
    local: actornet.Node, cluster: Cluster
) -> None:
    """The same for the default pg scope: malformed messages are dropped, and a scope that
    crashes is restarted and learns every peer's members again (its own members are lost
    with it, as in OTP: they join again)."""
    [b] = connected(cluster, "b")
    members = actornet.rpc.call(b.name, remote.pg_members, "room", 2)
    wait_until(lambda: sorted(pg.get_members("room")) == sorted(members), what="b's members")
    scope = local.whereis(pg.DEFAULT_SCOPE)
    for bad in MALFORMED:
        actornet.rpc.call(b.name, actornet.send, (pg.DEFAULT_SCOPE, local.name), bad)
        actornet.send(pg.DEFAULT_SCOPE, bad)
        actornet.cast(pg.DEFAULT_SCOPE, bad)
        with pytest.raises(actornet.BadArg):
            actornet.call(pg.DEFAULT_SCOPE, bad)
    assert pg.get_members("nothing") == []  # read after a call: every message was read
    assert local.whereis(pg.DEFAULT_SCOPE) == scope, "the pg scope crashed"
    assert sorted(pg.get_members("room")) == sorted(members)

    actornet.exit(scope, "kill")
    wait_until(lambda: local.whereis(pg.DEFAULT_SCOPE) not in (None, scope), what="a restart")
    wait_until(lambda: sorted(pg.get_members("room")) == sorted(members),
               what="b's members to come back")
    pg.join("room", actornet.self())
    wait_until(lambda: len(actornet.rpc.call(b.name, remote.pg_get_members, "room")) == 3,
               what="a join after the restart to reach b")


def test_a_system_server_used_while_the_kernel_supervisor_restarts_it_is_waited_for(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller that used pg or global_ just after its server crashed started a server of
    its own, racing the kernel supervisor's restart for the name: the caller lost with
    `AlreadyRegistered`, or the supervisor did, failed its restarts until it gave up and
    took the other system server down with it. Now the caller waits for the restart: the
    supervisor keeps both servers, each still under it, and every use answers."""
    monkeypatch.setattr(_kernel, "MAX_RESTARTS", 1000)  # 60 crashes here are no storm
    local = actornet.start_node(unique("t"), cookie=COOKIE, port=0)
    try:
        _restart_race(local)
    finally:
        local.stop()


def _restart_race(local: actornet.Node) -> None:
    kernel = local.whereis("kernel_sup")
    me = actornet.self()
    for _ in range(30):
        scope, names = local.whereis(pg.DEFAULT_SCOPE), local.whereis(global_.SERVER)
        actornet.exit(scope, "kill")
        actornet.exit(names, "kill")
        pg.join("g", me)  # at once: before, during or after the restart
        assert pg.get_local_members("g") == [me]
        assert global_.register_name("n", me) == "yes" and global_.whereis_name("n") == me
        global_.unregister_name("n")
        assert local.whereis(pg.DEFAULT_SCOPE) not in (None, scope)
        assert local.whereis(global_.SERVER) not in (None, names)
    assert local.whereis("kernel_sup") == kernel
    children = dict((cid, pid) for cid, pid, _ in actornet.Supervisor.which_children(kernel))
    assert children == {global_.SERVER: local.whereis(global_.SERVER),
                        pg.DEFAULT_SCOPE: local.whereis(pg.DEFAULT_SCOPE)}


def test_pg_broadcast_ships_one_copy_per_node_and_keeps_each_members_order(
        local: actornet.Node, cluster: Cluster) -> None:
    """Members on two other nodes and here; a seeded mix of broadcasts and direct sends to
    single members: each member gets exactly what was addressed to it, in the order sent.
    A broadcast of 20 KB to 60 members on one node puts one copy on the wire."""
    import random

    b, c = connected(cluster, "b", "c")
    me = actornet.self()
    members = [*actornet.rpc.call(b.name, remote.pg_recorders, "news", 60, me),
               *actornet.rpc.call(c.name, remote.pg_recorders, "news", 5, me),
               *remote.pg_recorders("news", 3, me)]
    wait_until(lambda: all(Multiset(m) == Multiset(members) for m in everywhere(
        [b, c], remote.pg_get_members, "news")), what="the members everywhere")
    rng = random.Random(20261207)
    expected: dict[actornet.Pid, list[Any]] = {pid: [] for pid in members}
    for i in range(300):
        if rng.random() < 0.3:
            assert pg.broadcast("news", ("all", i)) == len(members)
            for pid in members:
                expected[pid].append(("all", i))
        else:
            pid = rng.choice(members)
            actornet.send(pid, ("one", i))
            expected[pid].append(("one", i))
    on_each([b, c], actornet.node)  # a round trip: what came before is on the wire
    before = local.node_info()["bytes_out"]
    blob = b"x" * 20_000
    assert pg.broadcast("news", ("blob", blob)) == len(members)
    for pid in members:
        expected[pid].append(("blob", blob))
    assert pg.broadcast("nobody listens", "x") == 0
    on_each([b, c], actornet.node)
    sent = local.node_info()["bytes_out"] - before
    assert sent < 3 * len(blob), f"{sent} bytes out for a 20 KB broadcast to two nodes"
    for pid in members:
        actornet.send(pid, "end")
    got = dict(actornet.receive(lambda m: m[0] == "record", timeout=20)[1:]
               for _ in members)
    assert got == expected


def test_a_name_server_shares_names_only_with_servers_of_its_protocol_version(
        local: actornet.Node, cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    """global_ carries its own protocol version in the table its servers exchange on
    connecting. A node whose name server speaks another version (here: one that speaks
    version 1) is connected, not refused at the handshake; its table is not taken, the
    node says so once, and leaves it out of its lock rounds, so a name registered here is
    not written there."""
    from actornet import _global_server

    old = _global_server.PROTOCOL - 1
    b = cluster.start(unique("b"), extra=[
        "--tick-time", "1.5", "--eval", f"import actornet._global_server as g; g.PROTOCOL = {old}"])
    with caplog.at_level("WARNING", logger="actornet.global"):
        assert actornet.ping(b.address) == "pong"

        def said() -> list[str]:
            return [r.getMessage() for r in caplog.records
                    if f"speaks global protocol {old}" in r.getMessage()]

        wait_until(lambda: said(), what="b's table, of the other version")
        assert global_.register_name("here", actornet.self()) == "yes"
        assert actornet.rpc.call(b.name, remote.global_whereis, "here") is None
        assert global_.whereis_name("here") == actornet.self()
    assert len(said()) == 1 and b.name in said()[0], said()
    assert b.name in actornet.nodes()  # still connected: only global_ leaves it out


def test_a_pg_scope_shares_members_only_with_scopes_of_its_protocol_version(
        local: actornet.Node, cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    """pg carries its own protocol version in its discover: a scope of another version (an
    older node, or a newer one) is connected, not refused at the handshake, and is told
    nothing; the node says so once. The same scope answers a discover of its version."""
    [b] = connected(cluster, "b")
    with caplog.at_level("WARNING", logger="actornet.pg"):
        others = actornet.rpc.call(b.name, remote.pg_discover_versions, local.name,
                                   [None, 1, _pg_scope.PROTOCOL + 1])
        assert others == []
        mine = actornet.rpc.call(b.name, remote.pg_discover_versions, local.name,
                                 [_pg_scope.PROTOCOL])
        assert mine == [local.name]
    said = [r.getMessage() for r in caplog.records if "speaks pg protocol" in r.getMessage()]
    assert len(said) == 1 and b.name in said[0], said
    assert b.name in actornet.nodes()  # still connected: only pg ignores it
