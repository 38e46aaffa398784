"""Scrubbing secrets out of text that came from an upstream.

An upstream may echo the key it was sent (``Incorrect API key provided: sk-...``, or
a proxy quoting the ``Authorization`` header). Before such text reaches a client, a
log line or a logging callback, every run of key-like characters that shares a
fragment with one of the deployment's secrets is replaced by ``[redacted]``: the
whole key, a prefix or suffix of it of ``MIN_FRAGMENT`` characters or more, or any
piece of it of ``NGRAM`` characters. Masked forms such as ``sk-proj-****abcd`` lose
their prefix; four trailing characters, what OpenAI itself shows, stay.

Only error paths call this: a successful answer is never scanned.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[redacted]"
MIN_FRAGMENT = 6  # shorter pieces (``sk-``, a 4-character tail) say nothing usable about a key
NGRAM = 8
_TOKEN = re.compile(rf"[A-Za-z0-9_\-.~+/]{{{MIN_FRAGMENT},}}")


class Scrubber:
    """Removes the given secrets (and fragments of them) from text; see the module docstring."""

    __slots__ = ("_grams", "_secrets")

    def __init__(self, secrets: Iterable[str | None]) -> None:
        self._secrets = [s for s in secrets if s and len(s) >= MIN_FRAGMENT]
        self._grams = {s[i:i + NGRAM] for s in self._secrets for i in range(len(s) - NGRAM + 1)}

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def _leaks(self, token: str) -> bool:
        for secret in self._secrets:
            if token in secret or secret in token:
                return True
        grams = self._grams
        return any(token[i:i + NGRAM] in grams for i in range(len(token) - NGRAM + 1))

    def text(self, text: str) -> str:
        """``text`` with every fragment of a secret replaced by ``[redacted]``."""
        if not self._secrets:
            return text
        return _TOKEN.sub(lambda m: REDACTED if self._leaks(m.group()) else m.group(), text)

    def data(self, raw: bytes) -> bytes:
        """The same for bytes (an upstream body), decoded as UTF-8 with replacement when needed."""
        if not self._secrets:
            return raw
        decoded = raw.decode("utf-8", "replace")
        scrubbed = self.text(decoded)
        return raw if scrubbed == decoded else scrubbed.encode()

    def value(self, value: object) -> object:
        """A JSON value with every string in it scrubbed (dicts and lists walked)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value
