# docs/examples/messenger.py
"""The messenger of Erlang's Getting Started guide, with robustness added, ported.

One node runs the server, registered as "messenger"; each node where a user is
logged on runs a client process registered as "mess_client". Run each node as
its own program from this directory, as the porting guide shows:
  server: python -m actornet node --name messenger@127.0.0.1 --no-shell
              --eval "import messenger; messenger.start_server()"
  users:  python -m actornet node --name c1@127.0.0.1, then at its shell
              import messenger; messenger.logon("peter")
"""

from typing import Any

import actornet
from actornet import Pid


def server_node() -> str:
    """The node where the messenger server runs: change it to yours."""
    return "messenger@127.0.0.1"


# -- the server: users is {client_pid: name} -------------------------------------------------


def server() -> None:
    actornet.trap_exit(True)
    users: dict[Pid, str] = {}
    while True:
        for msg in actornet.receiving():
            match msg:
                case (from_, "logon", name):
                    server_logon(from_, name, users)
                    break
                case ("EXIT", from_, _):
                    users.pop(from_, None)  # server_logoff
                    break
                case (from_, "message_to", to, message):
                    server_transfer(from_, to, message, users)
                    print("list is now:", list(users.values()))
                    break


def start_server() -> bool:
    return actornet.register("messenger", actornet.spawn(server))


def server_logon(from_: Pid, name: str, users: dict[Pid, str]) -> None:
    if name in users.values():  # logged on anywhere else
        actornet.send(from_, ("messenger", "stop", "user_exists_at_other_node"))
    else:
        actornet.send(from_, ("messenger", "logged_on"))
        actornet.link(from_)
        users[from_] = name


def server_transfer(from_: Pid, to: str, message: Any, users: dict[Pid, str]) -> None:
    if from_ not in users:
        actornet.send(from_, ("messenger", "stop", "you_are_not_logged_on"))
        return
    to_pid = next((pid for pid, name in users.items() if name == to), None)
    if to_pid is None:
        actornet.send(from_, ("messenger", "receiver_not_found"))
    else:
        actornet.send(to_pid, ("message_from", users[from_], message))
        actornet.send(from_, ("messenger", "sent"))


# -- user commands ---------------------------------------------------------------------------


def logon(name: str) -> Any:
    if actornet.whereis("mess_client") is None:
        return actornet.register("mess_client", actornet.spawn(client, server_node(), name))
    return "already_logged_on"


def logoff() -> Any:
    return actornet.send("mess_client", "logoff")


def message(to_name: str, message: Any) -> str:
    if actornet.whereis("mess_client") is None:  # is the client running?
        return "not_logged_on"
    actornet.send("mess_client", ("message_to", to_name, message))
    return "ok"


# -- the client process, on each user's node -------------------------------------------------


def client(server_node: str, name: str) -> None:
    actornet.send(("messenger", server_node), (actornet.self(), "logon", name))
    await_result()
    while True:
        for msg in actornet.receiving():
            match msg:
                case "logoff":
                    return  # exit(normal)
                case ("message_to", to_name, message):
                    actornet.send(("messenger", server_node),
                                  (actornet.self(), "message_to", to_name, message))
                    await_result()
                    break
                case ("message_from", from_name, message):
                    print(f"Message from {from_name}: {message}")
                    break


def await_result() -> None:
    """Wait for the server's answer; stop the client if it never comes."""
    for msg in actornet.receiving(timeout=5):
        match msg:
            case ("messenger", "stop", why):  # stop the client
                print(why)
                raise actornet.ProcessExit("normal")
            case ("messenger", what):  # a normal answer
                print(what)
                return
    else:
        print("No response from server")
        raise actornet.ProcessExit("timeout")
