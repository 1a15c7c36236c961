# docs/examples/receive_patterns.py
"""Erlang's receive idioms in Python: patterns, bound variables, guards, after T, after 0, flush."""

from typing import Any

import actornet


def ask(server: actornet.Pid, question: str) -> Any:
    ref = actornet.make_ref()
    actornet.send(server, ("ask", actornet.self(), ref, question))
    for msg in actornet.receiving(timeout=0.5):
        match msg:
            case ("reply", r, answer) if r == ref:  # Ref is bound: compare in a guard
                return answer
    return "timeout"  # after 500 -> timeout


def oracle() -> None:
    while True:
        for msg in actornet.receiving():
            match msg:
                case ("ask", sender, ref, "meaning"):
                    actornet.send(sender, ("reply", ref, 42))
                    break
                case ("ask", _, _, _):
                    break  # no answer: the asker times out
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
    for _ in actornet.receiving(timeout=seconds):
        pass  # no clause takes anything: every message stays queued


me = actornet.self()
pid = actornet.spawn(oracle)
actornet.send(me, ("reply", actornet.make_ref(), "stale"))  # another ref: never matched
print(ask(pid, "meaning"))
print(ask(pid, "weather"))

# Several patterns with guards in one receive: the oldest message that a clause
# takes is the one taken; the others stay queued, in order.
for m in [("temp", 15.0), ("temp", 21.5), ("alarm", "door")]:
    actornet.send(me, m)
for _ in range(2):
    for msg in actornet.receiving(timeout=1.0):
        match msg:
            case ("alarm", what):
                print("alarm:", what)
                break
            case ("temp", degrees) if degrees > 20:
                print("warm:", degrees)
                break

# The function form: a match function picks the message, for a single pattern.
actornet.send(me, ("temp", 30.0))
print(actornet.receive(lambda m: isinstance(m, tuple) and m[0] == "temp" and m[1] > 20))

sleep(0.05)
print("flushed:", [m[0] for m in flush()])
actornet.send(pid, "stop")

# Output:
# 42
# timeout
# warm: 21.5
# alarm: door
# ('temp', 30.0)
# flushed: ['reply', 'temp']
