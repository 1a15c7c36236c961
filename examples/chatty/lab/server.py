# examples/chatty/lab/server.py
"""Chatty lab -- single server (server.erl).

Registers ``myserver``, keeps a {pid: name} dict of clients and broadcasts
("join", name), ("exit", name) and ("msg", from_, text) to every client.
Client -> server protocol:
  ("client_join_req", name, pid)  ("client_leave_req", name, pid)  ("send", name, text)
"""

from __future__ import annotations

from typing import Any

import actornet
from actornet import Pid


def start() -> Pid:
    pid = actornet.spawn(init)
    actornet.register("myserver", pid)
    return pid


def stop() -> None:
    actornet.send("myserver", "stop")


def init() -> None:
    actornet.trap_exit(True)  # notice clients that die / lose connection
    loop({})


def loop(clients: dict[Pid, str]) -> None:
    while True:  # Erlang's tail call loop(New) becomes a loop over mutable state
        for msg in actornet.receiving():
            match msg:  # each clause ends with break: a message no clause takes stays queued
                case ("client_join_req", name, from_):
                    actornet.link(from_)
                    clients[from_] = name
                    print(f"[JOIN] {name}", flush=True)
                    broadcast(clients, ("join", name))  # the joiner sees its own join as an ack
                    break
                case ("client_leave_req", name, from_):
                    actornet.unlink(from_)
                    print(f"[EXIT] {name}", flush=True)
                    broadcast(clients, ("exit", name))  # the leaver sees its own exit as an ack
                    clients.pop(from_, None)
                    break
                case ("send", name, text):
                    print(f'"{name}": {text}', flush=True)
                    broadcast(clients, ("msg", name, text))
                    break
                case ("EXIT", from_, _reason):  # a client died, or its node went down
                    name = clients.pop(from_, None)
                    if name is not None:
                        print(f"[EXIT] {name}", flush=True)
                        broadcast(clients, ("exit", name))
                    break
                case "stop":
                    return


def broadcast(clients: dict[Pid, str], msg: Any) -> None:
    for pid in clients:
        actornet.send(pid, msg)
