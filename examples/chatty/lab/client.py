# examples/chatty/lab/client.py
"""Chatty lab -- client (client.erl).

  c = client.start(("myserver", node), name)  spawn a client process that joins
  client.send(c, text), client.leave(c)       drive it programmatically
  client.repl(("myserver", node), name)       interactive: type lines, "exit" or "/quit" leaves
"""

from __future__ import annotations

import sys
from typing import Any

import actornet
from actornet import Pid


def start(server: Any, name: str) -> Pid:
    return actornet.spawn(init, server, name)


def send(c: Pid, text: str) -> None:
    actornet.send(c, ("say", text))


def leave(c: Pid) -> None:
    actornet.send(c, "leave")


def init(server: Any, name: str) -> None:
    actornet.send(server, ("client_join_req", name, actornet.self()))
    loop(server, name)


def loop(server: Any, name: str) -> None:
    while True:
        match actornet.receive():
            case ("say", text):
                actornet.send(server, ("send", name, text))
            case "leave":
                actornet.send(server, ("client_leave_req", name, actornet.self()))
                wait_exit(name)
                return
            case msg:
                show(msg)


def wait_exit(name: str) -> None:  # until the server acknowledges our exit
    while True:
        for msg in actornet.receiving(timeout=5):
            match msg:
                case ("exit", who) if who == name:
                    show(msg)
                    return
                case _:
                    show(msg)
                    break  # wait_exit(Name) again
        else:  # after 5000 -> ok
            return


def show(msg: Any) -> None:
    match msg:
        case ("join", who):
            print(f"[JOIN] {who} joined", flush=True)
        case ("exit", who):
            print(f"[EXIT] {who} left", flush=True)
        case ("msg", from_, text):
            print(f"[{from_}] {text}", flush=True)
        case other:
            print(f"[?] {other!r}", flush=True)


def repl(server: Any, name: str) -> None:
    c = start(server, name)
    ref = actornet.monitor(c)  # a script ends when repl returns: wait for the client first
    repl_loop(c)
    for msg in actornet.receiving(timeout=10):
        match msg:
            case ("DOWN", r, *_) if r == ref:
                break


def repl_loop(c: Pid) -> None:
    prompt = "-> " if sys.stdin.isatty() else ""
    while True:
        try:
            line = input(prompt)
        except (EOFError, OSError, KeyboardInterrupt):
            leave(c)
            return
        match line.strip():
            case "exit" | "/quit":
                leave(c)
                return
            case "":
                continue
            case text:
                send(c, text)
