"""The load generator: raw asyncio websocket clients, many per process, driven over pipes.

    generator.py    the coordinator (LoadGenerator): starts the processes, sends commands,
                    sums their replies
    pipe.py         the command pipe and a load process's main loop
    process.py      one load process: its clients, counters and commands
    connecting.py   a bounded round of connects (open; the reconnect storm with backoff)
    churn.py        connect + subscribe + close cycles at a rate
    client.py       one client (Slot) and its websocket connection (an asyncio.Protocol)
    results.py      what each command answers (TypedDicts)
    adapters.py     the Adapter protocol: how a connection speaks to one kind of server
    herald.py       the Adapter for Herald

Each load process runs uvloop, holds up to 19,000 connections bound to its own loopback
sources, and reports its own CPU time so that the report can show what the load cost.
"""
