"""The wire protocol without I/O: codes, client commands, server frames, session state.

Nothing in this package imports asyncio, websockets or redis; it takes bytes and str in and
gives typed values out, and it is tested without an event loop (docs/protocol.md).
"""
