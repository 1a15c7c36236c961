# docs/examples/receive_patterns.py
"""Erlang's receive idioms in Python: patterns, bound variables, after T, after 0, flush."""

import contextlib
from typing import Any

import actornet


def is_reply_to(ref: actornet.Ref) -> Any:
    """A match function for {reply, Ref, _} with Ref bound: any message may come its way."""
    return lambda m: isinstance(m, tuple) and len(m) == 3 and m[0] == "reply" and m[1] == ref


def ask(server: actornet.Pid, question: str) -> Any:
    ref = actornet.make_ref()
    actornet.send(server, ("ask", actornet.self(), ref, question))
    try:
        _, _, answer = actornet.receive(is_reply_to(ref), timeout=0.5)  # after 500 ->
    except TimeoutError:
        return "timeout"
    return answer


def oracle() -> None:
    while True:
        match actornet.receive():
            case ("ask", sender, ref, "meaning"):
                actornet.send(sender, ("reply", ref, 42))
            case ("ask", _, _, _):
                pass  # no answer: the asker times out
            case "stop":
                return


def flush() -> list[Any]:
    """Erlang's flush(): take every queued message, wait for none (after 0)."""
    taken = []
    while True:
        try:
            taken.append(actornet.receive(timeout=0))
        except TimeoutError:
            return taken


def sleep(seconds: float) -> None:
    """receive after T -> ok end: a sleep that an exit signal interrupts at once."""
    with contextlib.suppress(TimeoutError):
        actornet.receive(lambda m: False, timeout=seconds)


me = actornet.self()
pid = actornet.spawn(oracle)
actornet.send(me, ("reply", actornet.make_ref(), "stale"))  # another ref: never matched
print(ask(pid, "meaning"))
print(ask(pid, "weather"))

# Several patterns with guards in one receive: the match function decides which
# message is taken (guards included); the match statement then takes it apart.
def wanted(m: Any) -> bool:
    match m:
        case ("alarm", _):
            return True
        case ("temp", degrees):
            return degrees > 20
    return False


for m in [("temp", 15.0), ("temp", 21.5), ("alarm", "door")]:
    actornet.send(me, m)
for _ in range(2):
    match actornet.receive(wanted, timeout=1.0):
        case ("alarm", what):
            print("alarm:", what)
        case ("temp", degrees):
            print("warm:", degrees)

sleep(0.05)
print("flushed:", [m[0] for m in flush()])
actornet.send(pid, "stop")

# Output:
# 42
# timeout
# warm: 21.5
# alarm: door
# flushed: ['reply', 'temp']
