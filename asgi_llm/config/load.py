"""LiteLLM-shaped YAML config: load, resolve ``os.environ/NAME``, validate, warn.

``load_config`` returns a typed ``Config`` or raises ``ConfigError`` whose message is
one line naming the key and the problem. Keys we do not support are collected by
``check_keys`` (which refuses typos) so start-up can list them in one warning instead of dropping
them silently.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

import msgspec
import yaml

from asgi_llm.config.litellm_keys import CHECKED
from asgi_llm.config.providers import LOCAL, PROVIDERS, default_base
from asgi_llm.config.schema import (
    Config,
    GeneralSettings,
    LiteLLMParams,
    LiteLLMSettings,
    ModelEntry,
    PromptSettings,
    RouterSettings,
    UpstreamSettings,
    VirtualKey,
)

__all__ = [
    "PROVIDERS", "Config", "ConfigError", "GeneralSettings", "LiteLLMParams", "LiteLLMSettings", "ModelEntry",
    "PromptSettings", "UpstreamSettings", "VirtualKey", "load_config", "parse_config", "check_keys",
]


class ConfigError(Exception):
    """A config that cannot run; ``str()`` is one line for the operator."""


_ENV = "os.environ/"
_AT = re.compile(r" - at `\$\.?(.*)`$")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _resolve_env(node: Any, path: str) -> Any:
    if isinstance(node, dict):
        return {k: _resolve_env(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_env(v, f"{path}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, str) and node.startswith(_ENV):
        name = node[len(_ENV) :]
        if name not in os.environ:
            raise ConfigError(f"`{path}`: environment variable {name} is not set")
        return os.environ[name]
    return node


class _Walk:
    """Sorts the keys the schema does not know: LiteLLM's (warned about) and typos (refused)."""

    def __init__(self) -> None:
        self.unsupported: list[str] = []
        self.unknown: list[str] = []  # one line each, with a did-you-mean where there is one

    def struct(self, raw: Any, info: msgspec.inspect.Type, path: str, section: str) -> None:
        if isinstance(info, msgspec.inspect.StructType) and isinstance(raw, dict):
            fields = {f.encode_name: f.type for f in info.fields}
            for key, value in raw.items():
                where = f"{path}.{key}" if path else str(key)
                inner = f"{section}.{key}" if section else str(key)
                if key in fields:
                    self.struct(value, fields[key], where, inner)
                else:
                    self.key(key, where, section, set(fields))
                    if isinstance(value, dict) and value and CHECKED.get(inner) is not None:  # router_settings
                        if where in self.unsupported:
                            self.unsupported.remove(where)  # its keys are listed instead
                        for child in value:
                            self.key(child, f"{where}.{child}", inner, set())
        elif isinstance(info, msgspec.inspect.ListType) and isinstance(raw, list):
            for i, item in enumerate(raw):
                self.struct(item, info.item_type, f"{path}[{i}]", f"{section}[]")

    def key(self, key: Any, where: str, section: str, ours: set[str]) -> None:
        if section not in CHECKED:
            self.unsupported.append(where)
            return
        theirs = CHECKED[section] or frozenset()
        if key in theirs:
            self.unsupported.append(where)
            return
        close = difflib.get_close_matches(str(key), sorted(ours | theirs), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        self.unknown.append(f"{where}: unknown key{hint}")


def check_keys(raw: dict[str, Any]) -> list[str]:
    """The keys of ``raw`` that neither asgi-llm nor LiteLLM knows would be refused (``ConfigError``,
    naming the first); return those LiteLLM knows and asgi-llm does not support, as dotted paths."""
    walk = _Walk()
    walk.struct(raw, msgspec.inspect.type_info(Config), "", "")
    if walk.unknown:
        more = f" (and {len(walk.unknown) - 1} more)" if len(walk.unknown) > 1 else ""
        raise ConfigError(walk.unknown[0] + more)
    return walk.unsupported


def _check(config: Config) -> None:
    for i, key in enumerate(config.keys):
        if not _SHA256.fullmatch(key.key_hash):
            raise ConfigError(f"`keys[{i}].key_hash`: must be the sha256 hex digest of the key "
                              "(asgi-llm --hash-key KEY prints it), not the key itself")
    if not config.model_list:
        raise ConfigError("`model_list`: no models configured")
    for i, entry in enumerate(config.model_list):
        where = f"model_list[{i}]"
        if not entry.model_name:
            raise ConfigError(f"`{where}.model_name`: must not be empty")
        provider, _, name = entry.litellm_params.model.partition("/")
        if provider not in PROVIDERS or not name:
            raise ConfigError(
                f"`{where}.litellm_params.model`: unknown provider in {entry.litellm_params.model!r}; "
                f"expected 'provider/model' with provider one of: {', '.join(PROVIDERS)}"
            )
        base = entry.litellm_params.api_base
        if base is not None and not base.startswith(("http://", "https://")):
            raise ConfigError(f"`{where}.litellm_params.api_base`: must be an http(s) URL, got {base!r}")
        if base is None and provider not in LOCAL and default_base(provider) is None:
            raise ConfigError(f"`{where}.litellm_params.api_base`: {provider}/ deployments need one (no default "
                              "for this provider)")
    names = {entry.model_name for entry in config.model_list}
    sections: dict[str, RouterSettings | LiteLLMSettings] = {
        "router_settings": config.router_settings, "litellm_settings": config.litellm_settings}
    for section, fallback_settings in sections.items():
        for kind in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
            rules: list[dict[str, list[str]]] = getattr(fallback_settings, kind) or []
            for i, rule in enumerate(rules):
                for group, targets in rule.items():
                    for name in (group, *targets):
                        if name not in names and name != "*":
                            raise ConfigError(f"`{section}.{kind}[{i}]`: model {name!r} is not in model_list")
        for name in fallback_settings.default_fallbacks or ():
            if name not in names:
                raise ConfigError(f"`{section}.default_fallbacks`: model {name!r} is not in model_list")
    if config.prompts.path is not None:
        found = prompts_path(config)
        if not os.path.exists(found):
            raise ConfigError(f"`prompts.path`: {found} does not exist")


def prompts_path(config: Config) -> str:
    """``prompts.path`` as a path: relative to the config file's folder (else the working directory)."""
    assert config.prompts.path is not None
    base = os.path.dirname(config.path) if config.path else os.getcwd()
    return os.path.join(base, config.prompts.path)


def parse_config(raw: Any, path: str | None = None) -> Config:
    """Validate an already-loaded mapping (YAML or code) into a ``Config``."""
    return _parse(raw, path)[0]


def _parse(raw: Any, path: str | None) -> tuple[Config, list[str]]:
    """The ``Config``, and the keys LiteLLM knows that asgi-llm does not support (typos raise)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"the config must be a mapping, not {type(raw).__name__}")
    resolved = _resolve_env(raw, "")
    unsupported = check_keys(raw)  # a typo stops here, before anything runs
    if isinstance(resolved.get("prompts"), str):  # `prompts: folder/` is short for `prompts: {path: folder/}`
        resolved["prompts"] = {"path": resolved["prompts"]}
    try:
        config = msgspec.convert(resolved, Config, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc)
        at = _AT.search(text)
        where = at.group(1) if at and at.group(1) else "(top level)"
        raise ConfigError(f"`{where}`: {_AT.sub('', text)}") from None
    config.path = path
    _check(config)
    return config, unsupported


def load_config(path: str | os.PathLike[str]) -> tuple[Config, list[str]]:
    """Read a YAML config; return it with the list of unsupported keys it carries."""
    file = Path(path)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{file} is not valid YAML{line}: {getattr(exc, 'problem', exc)}") from None
    return _parse(raw, str(file.resolve()))
