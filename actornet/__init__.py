"""actornet: Erlang/Elixir-style processes, supervision and distribution for Python.

Processes with pids and mailboxes, links, monitors and exit signals, registered
names, GenServers and supervisors inside a node; named nodes that talk over
ZeroMQ with a shared cookie.

Example:
    >>> import actornet
    >>> pid = actornet.spawn(lambda parent: actornet.send(parent, "hi"), actornet.self())
    >>> actornet.receive(timeout=5)
    'hi'
"""

from __future__ import annotations

import logging

from actornet import aio, global_, pg, rpc, testing
from actornet._gen import call, cast, reply
from actornet._ids import Pid, Ref
from actornet.errors import (
    ActornetError,
    AlreadyRegistered,
    AuthenticationError,
    BadArg,
    CallDeadlock,
    CallError,
    Crash,
    DecodeError,
    NodeDown,
    NoProc,
    PayloadTooLarge,
    ProcessExit,
    ProtocolError,
    Timeout,
)
from actornet.gen_server import NOREPLY, GenServer
from actornet.net_kernel import (
    disconnect_node,
    monitor_node,
    monitor_nodes,
    node,
    nodes,
    ping,
    start_node,
)
from actornet.node import Node
from actornet.process import (
    demonitor,
    exit,
    is_alive,
    link,
    make_ref,
    monitor,
    node_info,
    process_info,
    processes,
    receive,
    receiving,
    register,
    registered,
    self,
    send,
    spawn,
    spawn_link,
    spawn_monitor,
    trap_exit,
    unlink,
    unregister,
    whereis,
)
from actornet.supervisor import ChildSpec, Supervisor, child_spec
from actornet.timer import cancel_timer, send_after

logging.getLogger("actornet").addHandler(logging.NullHandler())

__all__ = [
    # processes
    "Pid",
    "Ref",
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "self",
    "send",
    "receive",
    "receiving",
    "register",
    "unregister",
    "whereis",
    "registered",
    "link",
    "unlink",
    "monitor",
    "demonitor",
    "exit",
    "trap_exit",
    "is_alive",
    "make_ref",
    "processes",
    "process_info",
    "node_info",
    "send_after",
    "cancel_timer",
    # behaviours
    "GenServer",
    "NOREPLY",
    "call",
    "cast",
    "reply",
    "Supervisor",
    "ChildSpec",
    "child_spec",
    # nodes
    "Node",
    "start_node",
    "node",
    "nodes",
    "ping",
    "monitor_node",
    "monitor_nodes",
    "disconnect_node",
    "rpc",
    "aio",
    "global_",
    "pg",
    "testing",
    # errors
    "ActornetError",
    "AlreadyRegistered",
    "AuthenticationError",
    "BadArg",
    "CallDeadlock",
    "CallError",
    "Crash",
    "DecodeError",
    "NodeDown",
    "NoProc",
    "PayloadTooLarge",
    "ProcessExit",
    "ProtocolError",
    "Timeout",
]
