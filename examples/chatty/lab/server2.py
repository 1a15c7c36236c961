# examples/chatty/lab/server2.py
"""Chatty lab -- multiple servers (server2.erl).

Every server registers ``myserver`` on its node and serves its local clients
(same client protocol as server.py). Servers relay every event to each other.
A new server joins through any existing one:  server2.start(("myserver", node)).
The contacted server adds it and sends ("update_servers", servers) to ALL servers.
Each server monitors the others and drops one from its list when it goes down.
"""

from __future__ import annotations

from typing import Any

import actornet
from actornet import Pid


def start(existing: Any = None) -> Pid:  # existing = ("myserver", node) | pid | None
    return start_via(existing)


def start_via(via: Any) -> Pid:
    pid = actornet.spawn(init, via)
    actornet.register("myserver", pid)
    return pid


def stop() -> None:
    actornet.send("myserver", "stop")


def servers(server: Any) -> list[Pid]:  # for demos / tests; raises TimeoutError after 5 s
    actornet.send(server, ("get_servers", actornet.self()))
    for msg in actornet.receiving(timeout=5):
        match msg:
            case ("servers", servers):
                return servers  # type: ignore[no-any-return]
    raise actornet.Timeout("no answer from the server within 5 s")  # after 5000 -> timeout


def init(via: Any) -> None:
    actornet.trap_exit(True)
    if via is None:
        servers = [actornet.self()]
    else:
        actornet.send(via, ("server_join_req", actornet.self()))
        for msg in actornet.receiving(timeout=10):
            match msg:
                case ("update_servers", servers):
                    break
        else:  # after 10000 -> exit(join_timeout)
            raise actornet.ProcessExit("join_timeout")
    show_servers(servers)
    loop(watch(servers, []), {})


def loop(servers: list[Pid], clients: dict[Pid, str]) -> None:
    me = actornet.self()
    while True:
        for msg in actornet.receiving():
            match msg:  # each clause ends with break: unmatched messages stay queued
                case ("server_join_req", from_):
                    new = [from_, *servers]
                    for s in new:
                        if s != me:
                            actornet.send(s, ("update_servers", new))
                    servers = watch(new, servers)
                    show_servers(servers)
                    break
                case ("update_servers", new):
                    servers = watch(new, servers)
                    show_servers(servers)
                    break
                case ("DOWN", _, "process", s, reason):  # a server died
                    servers = [x for x in servers if x != s]
                    print(f"[DOWN] server on {s.node}: {reason}", flush=True)
                    show_servers(servers)
                    break
                case ("get_servers", from_):
                    actornet.send(from_, ("servers", servers))
                    break
                case ("client_join_req", name, from_):
                    actornet.link(from_)
                    clients[from_] = name
                    print(f"[JOIN] {name}", flush=True)
                    relay(servers, clients, ("join", name))
                    break
                case ("client_leave_req", name, from_):
                    actornet.unlink(from_)
                    print(f"[EXIT] {name}", flush=True)
                    relay(servers, clients, ("exit", name))
                    clients.pop(from_, None)
                    break
                case ("send", name, text):
                    print(f'"{name}": {text}', flush=True)
                    relay(servers, clients, ("msg", name, text))
                    break
                case ("relay", relayed):  # from another server
                    broadcast(clients, relayed)
                    break
                case ("EXIT", from_, _reason):
                    name = clients.pop(from_, None)
                    if name is not None:
                        print(f"[EXIT] {name}", flush=True)
                        relay(servers, clients, ("exit", name))
                    break
                case "stop":
                    return


def watch(new: list[Pid], old: list[Pid]) -> list[Pid]:
    """Monitor the servers we did not know before."""
    me = actornet.self()
    for s in new:
        if s != me and s not in old:
            actornet.monitor(s)
    return new


def relay(servers: list[Pid], clients: dict[Pid, str], msg: Any) -> None:
    broadcast(clients, msg)
    me = actornet.self()
    for s in servers:
        if s != me:
            actornet.send(s, ("relay", msg))


def broadcast(clients: dict[Pid, str], msg: Any) -> None:
    for pid in clients:
        actornet.send(pid, msg)


def show_servers(servers: list[Pid]) -> None:
    print(f"[SERVERS] {' '.join(s.node for s in servers)}", flush=True)
