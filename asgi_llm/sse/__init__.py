"""Server-sent events: the one codec, a chunk's text, and assembling a stream into one response."""
