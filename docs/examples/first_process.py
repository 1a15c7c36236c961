# docs/examples/first_process.py
"""Spawn a process, send it messages, receive its answers (selective, with a timeout)."""

import actornet


def echo() -> None:
    """Answer ("echo", sender, text) with ("echoed", text) until told "stop"."""
    while True:
        msg = actornet.receive()
        if msg == "stop":
            return
        _, sender, text = msg
        actornet.send(sender, ("echoed", text.upper()))


me = actornet.self()  # this script's main thread is a process too
pid = actornet.spawn(echo)
actornet.send(pid, ("echo", me, "hello"))
print(actornet.receive(timeout=5))

# Selective receive: take the first message that matches, leave the rest queued.
actornet.send(me, ("note", "queued first"))
actornet.send(pid, ("echo", me, "world"))
print(actornet.receive(lambda m: m[0] == "echoed", timeout=5))
print(actornet.receive(timeout=5))  # the skipped message is still there

# A timeout (in seconds) raises TimeoutError, like `after T ->` in Erlang.
try:
    actornet.receive(lambda m: m == "never sent", timeout=0.1)
except TimeoutError:
    print("nothing within 0.1 s")

# Several patterns: a for loop over receiving() around a match statement. The oldest
# message that a clause takes (and leaves the loop with) is taken; the others stay
# queued. The loop's else: runs when the time is up, like `after`.
actornet.send(me, ("note", "stays queued"))
actornet.send(pid, ("echo", me, "again"))
for msg in actornet.receiving(timeout=5):
    match msg:
        case ("echoed", text):
            print("echoed:", text)
            break
        case "cancel":
            print("cancelled")
            break
else:
    print("no answer within 5 s")
print(actornet.receive(timeout=5))

actornet.send(pid, "stop")

# Output:
# ('echoed', 'HELLO')
# ('echoed', 'WORLD')
# ('note', 'queued first')
# nothing within 0.1 s
# echoed: AGAIN
# ('note', 'stays queued')
