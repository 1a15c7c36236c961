# docs/examples/supervisor_tree.py
"""A supervisor restarts a crashed child; the restarted child gets its name back."""

from typing import Any

import actornet
from actornet import GenServer, Supervisor, child_spec


class Worker(GenServer):
    def init(self, announce_to: actornet.Pid) -> None:
        self.count = 0
        actornet.send(announce_to, ("started", actornet.self()))

    def handle_call(self, request: Any, from_: Any) -> Any:
        if request == "crash":
            raise ZeroDivisionError("division by zero")
        self.count += 1
        return self.count


def started() -> actornet.Pid:
    return actornet.receive(lambda m: m[0] == "started", timeout=5)[1]


me = actornet.self()
sup = Supervisor.start_link(
    [child_spec("worker", Worker, me, name="worker")],
    strategy="one_for_one",
    max_restarts=3,
    max_seconds=5.0,
)
first = started()
print(actornet.call("worker", "work"), actornet.call("worker", "work"))

try:
    actornet.call("worker", "crash")
except actornet.CallError as e:
    print("call failed:", e.reason)

second = started()  # the supervisor started a fresh Worker
print("restarted:", second != first, actornet.whereis("worker") == second)
print("state is fresh:", actornet.call("worker", "work"))
print(Supervisor.count_children(sup))
GenServer.stop(sup)  # stops the children first, in reverse start order
print("worker after stop:", actornet.whereis("worker"))

# Output:
# 1 2
# call failed: ZeroDivisionError: division by zero
# restarted: True True
# state is fresh: 1
# {'specs': 1, 'active': 1, 'workers': 1, 'supervisors': 0}
# worker after stop: None
