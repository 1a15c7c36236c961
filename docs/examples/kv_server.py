# docs/examples/kv_server.py
"""The gen_server kv.erl of the porting guide, ported: every return value has its form."""

from typing import Any

import actornet


class KV(actornet.GenServer):
    def init(self, initial: dict[str, Any]) -> None:  # {ok, State}
        self.data = dict(initial)
        self.waiters: dict[str, list[Any]] = {}

    def handle_call(self, request: Any, from_: Any) -> Any:
        match request:
            case ("get", key):  # {reply, Value, State}
                return self.data.get(key)
            case ("wait_for", key) if key in self.data:
                return self.data[key]
            case ("wait_for", key):  # {noreply, State}, gen_server:reply/2 later
                self.waiters.setdefault(key, []).append(from_)
                return actornet.NOREPLY
            case "stop":  # {stop, normal, ok, State}
                actornet.reply(from_, "ok")
                raise actornet.ProcessExit("normal")
        return ("error", "bad request")

    def handle_cast(self, request: Any) -> None:
        match request:
            case ("put", key, value):  # {noreply, State}
                self.data[key] = value
                for waiter in self.waiters.pop(key, []):
                    actornet.reply(waiter, value)

    def terminate(self, reason: Any) -> None:
        for waiters in self.waiters.values():  # callers still waiting get None
            for waiter in waiters:
                actornet.reply(waiter, None)


# The module's API functions: thin wrappers around call and cast.
def start_link() -> actornet.Pid:
    return KV.start_link({"a": 1}, name="kv")


def store(key: str, value: Any) -> None:
    actornet.cast("kv", ("put", key, value))


def fetch(key: str) -> Any:
    return actornet.call("kv", ("get", key))


def stop() -> Any:
    return actornet.call("kv", "stop")


me = actornet.self()
start_link()
print(fetch("a"), fetch("b"))
actornet.spawn(lambda: actornet.send(me, ("waited", actornet.call("kv", ("wait_for", "b")))))
store("b", 2)
print(actornet.receive(lambda m: m[0] == "waited", timeout=5))
ref = actornet.monitor("kv")
print(stop())  # the reply comes before terminate runs: the server may still be alive
print(actornet.receive(lambda m: m[0] == "DOWN" and m[1] == ref, timeout=5)[4])
print(actornet.whereis("kv"))

# Output:
# 1 None
# ('waited', 2)
# ok
# normal
# None
