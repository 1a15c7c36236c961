"""The Chatty lab, ported line for line from its Erlang reference.

`server` (one server, registered as ``myserver``), `server2` (servers that relay
to each other) and `client` mirror server.erl, server2.erl and client.erl
function by function; ``python -m examples.chatty.lab`` runs them as nodes.
See docs/porting-the-chatty-lab.md.
"""
