# docs/examples/counter_server.py
"""A GenServer: state on self, calls answered at once or later, casts, infos, terminate."""

from typing import Any

import actornet


class Counter(actornet.GenServer):
    def init(self, start: int) -> None:
        # Runs in the server's own thread before Counter.start returns.
        self.n = start

    def handle_call(self, request: Any, from_: Any) -> Any:
        if request == "get":
            return self.n  # the reply
        if request == "get_later":
            # Reply from another process; the server is free meanwhile.
            actornet.spawn(actornet.reply, from_, ("later", self.n))
            return actornet.NOREPLY
        return ("error", "unknown request")

    def handle_cast(self, request: Any) -> None:
        if request == "inc":
            self.n += 1

    def handle_info(self, msg: Any) -> None:
        # Every message that is not a call or a cast: plain sends, DOWN, EXIT.
        if msg == "reset":
            self.n = 0

    def terminate(self, reason: Any) -> None:
        print("terminate:", reason, "at", self.n)


pid = Counter.start(5, name="counter")
actornet.cast("counter", "inc")
actornet.cast(pid, "inc")
print("get:", actornet.call("counter", "get"))
print("get_later:", actornet.call("counter", "get_later", timeout=2.0))
actornet.send("counter", "reset")  # arrives after the casts: one sender, one order
print("after reset:", actornet.call("counter", "get"))
print("unknown:", actornet.call("counter", "double"))
actornet.GenServer.stop("counter", reason="shutdown")
print("alive:", actornet.is_alive(pid))

# Output:
# get: 7
# get_later: ('later', 7)
# after reset: 0
# unknown: ('error', 'unknown request')
# terminate: shutdown at 0
# alive: False
