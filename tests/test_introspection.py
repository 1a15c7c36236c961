"""process_info and node_info: what an operator can see of a node."""

from __future__ import annotations

import threading

import actornet

from .helpers import wait_until


def test_process_info_fields() -> None:
    me = actornet.self()
    ready = threading.Event()

    def worker() -> None:
        actornet.trap_exit(True)
        actornet.link(me)
        ready.set()
        actornet.receive(lambda m: m == "stop")

    pid = actornet.spawn(worker)
    assert ready.wait(5)
    actornet.register("worker", pid)
    ref = actornet.monitor(pid)
    wait_until(lambda: actornet.process_info(pid)["status"] == "waiting")
    info = actornet.process_info(pid)
    assert info is not None
    assert info["registered_name"] == "worker"
    assert info["links"] == [me]
    assert info["monitored_by"] == [me]
    assert info["trap_exit"] is True
    assert "worker" in info["current_function"]
    assert info["kind"] == "function"
    actornet.send(pid, "stop")
    actornet.receive(lambda m: m[0] == "DOWN" and m[1] == ref, timeout=5)
    assert actornet.process_info(pid) is None


def test_a_flood_is_visible_and_nothing_is_dropped() -> None:
    """Mailboxes are unbounded, as in Erlang: a flood queues up, visibly, and all arrives."""
    release = threading.Event()

    def slow(parent: actornet.Pid) -> None:
        release.wait(30)
        count = 0
        while actornet.receive(timeout=5) != "end":
            count += 1
        actornet.send(parent, ("count", count))

    pid = actornet.spawn(slow, actornet.self())
    flood = 100_000
    for i in range(flood):
        actornet.send(pid, i)
    actornet.send(pid, "end")
    assert actornet.process_info(pid)["message_queue_len"] == flood + 1
    info = actornet.node_info()
    assert info["largest_queues"][0] == (flood + 1, pid)
    assert info["message_queue_total"] >= flood + 1
    release.set()
    assert actornet.receive(lambda m: m[0] == "count", timeout=30) == ("count", flood)


def test_node_info_of_a_distributed_node(node: actornet.Node) -> None:
    node.stop()  # this test's own named nodes are the ones the API acts on
    with actornet.start_node("info_a@127.0.0.1", cookie="c", port=0) as a, \
            actornet.start_node("info_b@127.0.0.1", cookie="c", port=0) as b:
        assert actornet.ping(f"info_b@127.0.0.1:{b.port}") == "pong"
        pid = b.spawn(actornet.receive)
        actornet.send(pid, "x" * 1000)
        info = wait_until(lambda: (i := a.node_info())["bytes_out"] > 1000 and i)
        assert info["name"] == "info_a@127.0.0.1" and info["distributed"]
        assert info["connections"]["info_b@127.0.0.1"]["state"] == "up"
        assert info["batches_out"] >= 1
        assert info["tick_time"] == 4.0
        wait_until(lambda: b.node_info()["bytes_in"] > 1000)
        remote = actornet.process_info(b.spawn(actornet.receive))
        assert remote is not None and remote["kind"] == "function"
