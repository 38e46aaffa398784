"""The terminal app and everything behind it: routing, forwarding, providers, upstream errors.

``UpstreamApp`` answers local routes and forwards LLM calls: the ``Router`` picks a
deployment, the ``Forwarder`` calls it over the shared aiohttp pool (or the ``mock``
answers in-process), a ``DisconnectWatch`` cancels calls whose client left, an
``UpstreamTrace`` tells observers what happened, and error texts are scrubbed of keys.
"""
