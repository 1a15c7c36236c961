# docs/examples/chatty_server_light.py
"""chatty_server.py as lightweight processes: async def, await and async for; nothing else."""

import asyncio
from typing import Any

import actornet
from actornet import Pid, aio

# -- server.erl ------------------------------------------------------------------------


def start() -> Pid:
    pid = actornet.spawn(server_init)
    actornet.register("myserver", pid)
    return pid


def stop() -> None:
    actornet.send("myserver", "stop")


async def server_init() -> None:
    actornet.trap_exit(True)  # notice clients that die / lose connection
    await server_loop({})


async def server_loop(clients: dict[Pid, str]) -> None:
    while True:  # Erlang's tail call loop(New) becomes a loop over mutable state
        async for msg in aio.receiving():
            match msg:  # a clause takes its message with break; others stay queued
                case ("client_join_req", name, pid):
                    actornet.link(pid)
                    clients[pid] = name
                    broadcast(clients, ("join", name))  # the joiner sees its own join
                    break
                case ("client_leave_req", name, pid):
                    actornet.unlink(pid)
                    broadcast(clients, ("exit", name))  # the leaver sees its own exit
                    clients.pop(pid, None)
                    break
                case ("send", name, text):
                    broadcast(clients, ("msg", name, text))
                    break
                case ("EXIT", pid, _reason):
                    name = clients.pop(pid, None)
                    if name is not None:
                        broadcast(clients, ("exit", name))
                    break
                case "stop":
                    return


def broadcast(clients: dict[Pid, str], msg: Any) -> None:
    for pid in clients:
        actornet.send(pid, msg)


# -- a minimal client (client.erl) that reports what it would print ---------------------


async def client(server: Any, name: str, transcript: Pid) -> None:
    me = actornet.self()
    actornet.send(server, ("client_join_req", name, me))
    while True:
        match await aio.receive():
            case ("say", text):
                actornet.send(server, ("send", name, text))
            case "leave":
                actornet.send(server, ("client_leave_req", name, me))
                await aio.receive(lambda m: m == ("exit", name), timeout=5)
                actornet.send(transcript, (name, f"[EXIT] {name} left"))
                return
            case ("join", who):
                actornet.send(transcript, (name, f"[JOIN] {who} joined"))
            case ("exit", who):
                actornet.send(transcript, (name, f"[EXIT] {who} left"))
            case ("msg", who, text):
                actornet.send(transcript, (name, f"[{who}] {text}"))


async def show(name: str) -> None:
    """Print the next line client `name` reported (one client's lines stay in order)."""
    print(*await aio.receive(lambda m: m[0] == name, timeout=5), sep=": ")


async def main() -> None:  # the script is an asyncio task: an adopted process
    me = actornet.self()
    start()
    alice = actornet.spawn(client, "myserver", "alice", me)
    await show("alice")
    bob = actornet.spawn(client, "myserver", "bob", me)
    await show("alice")
    await show("bob")
    actornet.send(alice, ("say", "hello from alice"))
    await show("alice")
    await show("bob")
    actornet.exit(bob, "kill")  # bob's task is cancelled: the server gets ("EXIT", bob, "killed")
    await show("alice")
    actornet.send(alice, "leave")
    await show("alice")
    stop()


asyncio.run(main())

# Output:
# alice: [JOIN] alice joined
# alice: [JOIN] bob joined
# bob: [JOIN] bob joined
# alice: [alice] hello from alice
# bob: [alice] hello from alice
# alice: [EXIT] bob left
# alice: [EXIT] alice left
