# docs/examples/plain_threads.py
"""Any thread becomes a process the first time it uses actornet: it gets a pid and a mailbox."""

import threading

import actornet

me = actornet.self()  # the main thread's pid, created on first use
print("main is a process:", me in actornet.processes())


def thread_main(n: int) -> None:
    # A plain threading.Thread, not spawned by actornet: self() adopts it.
    actornet.send(me, ("from thread", n, actornet.self() != me))


threads = [threading.Thread(target=thread_main, args=(n,)) for n in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join(5)
print(sorted(actornet.receive(timeout=5) for _ in threads))
print("stable:", actornet.self() == me)

# Output:
# main is a process: True
# [('from thread', 0, True), ('from thread', 1, True), ('from thread', 2, True)]
# stable: True
