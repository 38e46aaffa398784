"""One request's path through the stack: from the wire to a context every layer shares.

Routes, the per-request ``RequestContext``, ``Ingest`` (limits, one parse, validation),
multipart sniffing, ``Replay`` for a foreign terminal app, the error model and the
``Errors`` layer that renders it, and the answers a rejection gets.
"""
