# docs/examples/cluster_counter.py
"""A counter on a node of its own, for the three-node session of getting started."""

from typing import Any

import actornet


class Counter(actornet.GenServer):
    def init(self) -> None:
        self.n = 0

    def handle_call(self, request: Any, from_: Any) -> Any:
        match request:
            case ("add", k):
                self.n += k
                return self.n
            case "get":
                return self.n
        return ("error", "unknown request")


def serve() -> None:
    """The program of node a: the counter, until someone stops it."""
    pid = Counter.start(name="counter")
    ref = actornet.monitor(pid)
    print("counter ready")
    for msg in actornet.receiving():
        match msg:
            case ("DOWN", r, "process", _, reason) if r == ref:
                print("counter stopped:", reason)
                break


def stop(node: str) -> None:
    """The program of node c: read the counter on `node`, then stop it."""
    print("counter on", node, "is at", actornet.call(("counter", node), "get"))
    actornet.GenServer.stop(("counter", node))
