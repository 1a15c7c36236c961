# docs/examples/web_counter.py
"""A web app whose handlers await a GenServer on another node: aiohttp + actornet.aio.

The counter runs on a node of its own; the web app is a node too, started on
aiohttp's event loop, so a handler awaits the counter with no thread between.
Run them from this directory (``pip install 'actornet[web]'`` brings aiohttp):
  python -m actornet node --name counter@127.0.0.1 --no-shell
      --eval "import web_counter; web_counter.start_counter()"
  python web_counter.py --name web@127.0.0.1 --counter counter@127.0.0.1 --port 8080
then: curl localhost:8080/count; curl -X POST localhost:8080/count
"""

import argparse
import asyncio

from aiohttp import web

import actornet
from actornet import aio


class Counter(actornet.GenServer):
    """A lightweight server: its callbacks are `async def`."""

    async def init(self) -> None:
        self.n = 0

    async def handle_call(self, request: str, from_: object) -> int:
        match request:
            case "get":
                return self.n
            case "inc":
                self.n += 1
                return self.n
        raise ValueError(f"unknown request {request!r}")


def start_counter() -> None:
    """On the counter's node: start it, registered as "counter"."""
    Counter.start(name="counter")


async def count(request: web.Request) -> web.Response:
    counter = request.app["counter"]
    what = "inc" if request.method == "POST" else "get"
    try:
        n = await aio.call(counter, what, timeout=2.0)
    except (actornet.NodeDown, actornet.NoProc) as e:
        return web.json_response({"error": str(e)}, status=503)
    except TimeoutError:
        return web.json_response({"error": "the counter did not answer"}, status=504)
    return web.json_response({"count": n})


async def main(name: str, counter_node: str, port: int) -> None:
    async with aio.start_node(name):  # its processes run on this very loop
        app = web.Application()
        app["counter"] = ("counter", counter_node)
        app.router.add_route("*", "/count", count)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print(f"serving on http://127.0.0.1:{port}", flush=True)
        try:
            await asyncio.Event().wait()  # until the program is stopped
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="this node's name@host")
    parser.add_argument("--counter", required=True, help="the counter's node")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    asyncio.run(main(args.name, args.counter, args.port))
