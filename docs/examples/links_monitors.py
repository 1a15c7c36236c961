# docs/examples/links_monitors.py
"""Links carry exit signals; trap_exit turns them into ("EXIT", pid, reason) messages.
Monitors deliver ("DOWN", ref, "process", pid, reason) exactly once."""

import actornet


def crash() -> None:
    raise ValueError("bad input")


def wait_forever() -> None:
    actornet.receive(lambda m: False)


# Links: trap exits so a linked crash arrives as a message instead of killing us.
actornet.trap_exit(True)
pid = actornet.spawn_link(crash)
tag, sender, reason = actornet.receive(lambda m: m[0] == "EXIT" and m[1] == pid, timeout=5)
print(tag, sender == pid, reason)  # reason is an actornet.Crash
print(type(reason).__name__, reason.type, reason.message)

done = actornet.spawn_link(lambda: None)
print(actornet.receive(lambda m: m[0] == "EXIT" and m[1] == done, timeout=5)[2])
actornet.trap_exit(False)

# Monitors: one-way, no trap_exit needed, one DOWN per monitor.
pid, ref = actornet.spawn_monitor(wait_forever)
actornet.exit(pid, "kill")  # untrappable
for msg in actornet.receiving(timeout=5):
    match msg:
        case ("DOWN", r, "process", who, reason) if r == ref:
            print("DOWN", who == pid, reason)
            break

# Monitoring a process that is already dead fires at once with "noproc".
ref = actornet.monitor(pid)
print(actornet.receive(lambda m: m[0] == "DOWN" and m[1] == ref, timeout=5)[4])

# Output:
# EXIT True ValueError: bad input
# Crash ValueError bad input
# normal
# DOWN True killed
# noproc
