"""A soak test of actornet under faults, on demand: ``python -m tests.soak --minutes N``.

A 3-node cluster (child OS processes) under continuous load (per-pair message
streams, calls with timeouts, pg joins and leaves, global registrations, monitors,
chat traffic through the real chat CLI) while nodes are SIGKILLed and restarted,
SIGSTOPped and resumed, and links are cut and healed at random, from a printed seed
(``--seed S`` replays the same fault schedule). See `tests.soak.runner` for what is
checked, `tests.soak._remote` for the workload, `tests.soak.chat` for the chat part.
"""
