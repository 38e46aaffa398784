"""Prompt templates of the store: the file schema, and versions compiled for fast rendering.

A template message is compiled once into a ``str.format`` string (literal braces
escaped, ``{{ name }}`` as a field), so rendering is one ``format_map`` per message:
values go in as text, in one pass, and are never rendered themselves. ``render``
checks the variables first and names every offender in one 400.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

import msgspec

from asgi_llm.request.errors import GatewayError

_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "number": (int, float), "boolean": (bool,), "enum": (str,)}
_ABSENT = object()
_copy = dict.copy
_key = msgspec.json.Encoder().encode
_decode = msgspec.json.decode
RENDER_CACHE = 1024  # distinct variable sets kept per version


class Variable(msgspec.Struct, forbid_unknown_fields=True):
    type: Literal["string", "number", "boolean", "enum"] = "string"
    values: list[str] = msgspec.field(default_factory=list)
    default: Any = msgspec.UNSET


class TemplateMessage(msgspec.Struct, forbid_unknown_fields=True):
    role: str
    content: str


class Version(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    labels: list[str] = msgspec.field(default_factory=list)
    template: str | None = None
    messages: list[TemplateMessage] | None = None
    model: str | None = None
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    variables: dict[str, Variable] = msgspec.field(default_factory=dict)


class Prompt(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    versions: list[Version]


class Compiled:
    """One version, its templates split once into literal text and variable names."""

    def __init__(self, prompt_id: str, v: Version) -> None:
        self.prompt_id = prompt_id
        self.version = v.version
        self.labels = set(v.labels)
        self.model = v.model
        self.params = v.params
        self.variables = v.variables
        if (v.template is None) == (v.messages is None):
            raise ValueError(f"version {v.version}: give exactly one of `template` and `messages`")
        sources = [("user", v.template)] if v.template is not None else [(m.role, m.content) for m in v.messages or []]
        self.parts = [(role, _VAR.split(text)) for role, text in sources]  # odd indexes are variable names
        for name, spec in v.variables.items():
            if spec.type == "enum" and not spec.values:
                raise ValueError(f"version {v.version}: enum variable {name!r} needs `values`")
        undeclared = {name for _, parts in self.parts for name in parts[1::2]} - set(v.variables)
        if undeclared:
            raise ValueError(f"version {v.version}: template uses undeclared {', '.join(sorted(undeclared))}")
        self.declared = frozenset(v.variables)
        self._rendered: dict[bytes, list[dict[str, str]]] = {}
        # each message as a str.format template: literal braces escaped, variables as {name} fields;
        # format_map inserts values as text in one pass, so a value is never itself rendered
        self.formats = [(role, "".join(p.replace("{", "{{").replace("}", "}}") if i % 2 == 0 else "{" + p + "}"
                                       for i, p in enumerate(parts))) for role, parts in self.parts]
        # (name, accepted types, enum values or None, default or UNSET), checked per render
        self.checks = [(name, _TYPES[spec.type], frozenset(spec.values) if spec.type == "enum" else None,
                        spec.default) for name, spec in v.variables.items()]

    def render(self, given: dict[str, Any], then: Iterable[Any] = ()) -> list[dict[str, Any]]:
        """The messages for ``given``, followed by ``then`` (the client's), in one new list. Cached per
        distinct set of values, keyed by their JSON: one C call, and JSON tells ``1``, ``1.0``, ``true``
        and ``"1"`` apart. Another key order is only another entry. A set whose JSON does not decode
        back to itself (``NaN`` encodes as ``null``, a YAML date as a string) is rendered, not cached."""
        try:
            key: bytes | None = _key(given)
        except (TypeError, ValueError, OverflowError):  # not JSON: render() names what is wrong
            key = None
        done = self._rendered.get(key) if key is not None else None
        if done is None:
            done = self._render(given)
            if key is not None and _decode(key) == given:
                if len(self._rendered) >= RENDER_CACHE:
                    self._rendered.clear()
                self._rendered[key] = done
        if len(done) == 1:  # the usual one system message: a plain copy, no map object
            return [done[0].copy(), *then]
        return [*map(_copy, done), *then]  # fresh copies: hooks may edit them

    def _render(self, given: dict[str, Any]) -> list[dict[str, str]]:
        text: dict[str, str] = {}  # each value as the text it renders to
        declared = self.declared
        problems = [] if given.keys() <= declared else [f"{name} (not declared)"
                                                         for name in sorted(given.keys() - declared)]
        for name, types, allowed, default in self.checks:
            value = given.get(name, _ABSENT)
            if value is _ABSENT:
                if default is msgspec.UNSET:
                    problems.append(f"{name} (missing, required)")
                    continue
                value = default
            elif (type(value) is bool and bool not in types) or not isinstance(value, types):
                problems.append(f"{name} (expected {self.variables[name].type}, got {type(value).__name__})")
                continue
            elif allowed is not None and value not in allowed:
                problems.append(f"{name} (expected one of {', '.join(self.variables[name].values)}, got {value!r})")
                continue
            kind = type(value)
            text[name] = value if kind is str else ("true" if value else "false") if kind is bool else str(value)
        if problems:
            raise GatewayError(400, f"Invalid prompt_variables for prompt {self.prompt_id!r} version {self.version}: "
                               + "; ".join(problems), param="prompt_variables", code="invalid_prompt_variables")
        return [{"role": role, "content": template.format_map(text)} for role, template in self.formats]


def parse_file(raw: Any) -> list[Prompt]:
    items = raw.get("prompts") if isinstance(raw, dict) and "prompts" in raw else [raw]
    return msgspec.convert(items, list[Prompt])
