"""The kernel supervisor of a named node: its system servers, restarted when they crash.

As OTP's ``kernel_sup`` keeps ``global_name_server`` and the default ``pg`` scope
running, `start` starts a supervisor registered as ``kernel_sup`` on a node, with the
node's `global_` name server and its default `pg` scope as children (one for one). A
server that crashes is started again at once, and rebuilds its replica from the
connected nodes (each module's docstring says how). If they crash more than
`MAX_RESTARTS` times in `MAX_SECONDS`, the supervisor gives up, logging it; each
module then starts its server again on its next use.

Example:
    >>> import actornet
    >>> with actornet.start_node("kerneldoc@127.0.0.1", cookie="c", port=0):
    ...     [cid for cid, _, _ in actornet.Supervisor.which_children("kernel_sup")]
    ['global_name_server', 'pg']
"""

from __future__ import annotations

from typing import Final

from actornet import _system, gen_server, pg
from actornet._global_server import SERVER, NameServer
from actornet._pg_scope import ScopeServer
from actornet.node import Node
from actornet.supervisor import Supervisor, child_spec

__all__ = ["NAME", "start"]

NAME: Final = _system.KERNEL_SUP
MAX_RESTARTS: Final = 10
MAX_SECONDS: Final = 10.0


def start(node: Node) -> None:
    """Start `node`'s kernel supervisor and its children (done by `start_node`)."""
    children = [
        child_spec(SERVER, NameServer, name=SERVER),
        child_spec(pg.DEFAULT_SCOPE, ScopeServer, pg.DEFAULT_SCOPE, name=pg.DEFAULT_SCOPE),
    ]
    gen_server.start_server(Supervisor, (children,), {"max_restarts": MAX_RESTARTS,
                                        "max_seconds": MAX_SECONDS}, NAME, link=False,
                          node=node)
