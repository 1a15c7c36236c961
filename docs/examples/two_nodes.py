# docs/examples/two_nodes.py
"""Two nodes in one script: ping, send to a name on a node, rpc, a remote GenServer,
remote spawn, and what losing the connection does to monitors, links and calls."""

from typing import Any

import actornet

A, B = "a@127.0.0.1", "b@127.0.0.1"


def echo() -> None:
    """Answer (sender, x) with ("echo", x), forever."""
    while True:
        sender, x = actornet.receive()
        actornet.send(sender, ("echo", x))


class Counter(actornet.GenServer):
    def init(self, start: int) -> None:
        self.n = start

    def handle_call(self, request: Any, from_: Any) -> Any:
        match request:
            case ("hang", observer):
                actornet.send(observer, "hanging")
                return actornet.NOREPLY  # never answered
            case "get":
                return (actornet.node(), self.n)

    def handle_cast(self, request: Any) -> None:
        self.n += request


def start_counter(start: int) -> actornet.Pid:
    # rpc.call runs this in a process on the target node, so the server starts there.
    return Counter.start(start, name="counter")


def caller(observer: actornet.Pid) -> None:
    try:
        actornet.call(("counter", B), ("hang", observer), timeout=30)
    except actornet.NodeDown:
        actornet.send(observer, ("call failed", "NodeDown"))


# Two nodes in one OS process, for the example; normally each is its own program.
# port=0: any free port and no port mapper, so peers dial "name@host:port".
a = actornet.start_node(A, cookie="docs-secret", port=0)  # first: the main thread's node
b = actornet.start_node(B, cookie="docs-secret", port=0)
b.register("echo", b.spawn(echo))  # Node methods act on that node

me = actornet.self()
print("main thread on", me.node)
print(actornet.ping(f"{B}:{b.port}"), actornet.nodes())
print("b sees", actornet.rpc.call(B, actornet.nodes))

# A registered name on another node is (name, node). Types survive the trip.
actornet.send(("echo", B), (me, ("tuple", ["list"], {"set": {1}})))
print(actornet.receive(timeout=5))

# A GenServer on b, started by rpc and used from a by name.
actornet.rpc.call(B, start_counter, 10)
actornet.cast(("counter", B), 5)
print(actornet.call(("counter", B), "get"))

# spawn(..., node=): the function travels by name (module and qualname) and runs on b.
actornet.trap_exit(True)
worker = actornet.spawn_link(echo, node=B)
print("worker on", worker.node)

# Watch b four ways, then drop the connection.
ref = actornet.monitor(("echo", B))
actornet.monitor_node(B)
actornet.spawn(caller, me)
actornet.receive(lambda m: m == "hanging", timeout=5)  # the call is pending on b
actornet.disconnect_node(B)

print(actornet.receive(lambda m: m[0] == "DOWN", timeout=5)[3:])
print(actornet.receive(lambda m: m[0] == "EXIT", timeout=5)[2])
print(actornet.receive(lambda m: m[0] == "nodedown", timeout=5))
print(actornet.receive(lambda m: m[0] == "call failed", timeout=5))
print(actornet.nodes())
try:
    actornet.receive(timeout=0.3)
except TimeoutError:
    print("each fired once")

b.stop()
a.stop()

# Output:
# main thread on a@127.0.0.1
# pong ['b@127.0.0.1']
# b sees ['a@127.0.0.1']
# ('echo', ('tuple', ['list'], {'set': {1}}))
# ('b@127.0.0.1', 15)
# worker on b@127.0.0.1
# (('echo', 'b@127.0.0.1'), 'noconnection')
# noconnection
# ('nodedown', 'b@127.0.0.1')
# ('call failed', 'NodeDown')
# []
# each fired once
