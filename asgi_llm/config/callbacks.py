"""Load ``litellm_settings.callbacks`` (``module.instance`` paths to ``CustomLogger`` objects)
and ``success_callback``/``failure_callback``/``input_callback`` (``module.function`` paths).

The module is looked up first as a file beside the config (``custom_callbacks.py``
next to ``config.yaml``, dots meaning folders), as LiteLLM does, then on
``sys.path``. A path that does not resolve, or an object of the wrong kind (not a
``CustomLogger``; not callable), raises ``ConfigError`` naming the entry.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from asgi_llm.config.load import ConfigError
from asgi_llm.hooks.custom_logger import CustomLogger


def _module(name: str, config_dir: Path | None) -> ModuleType:
    if config_dir is not None:
        file = config_dir.joinpath(*name.split(".")).with_suffix(".py")
        if file.is_file():
            key = f"asgi_llm_callbacks.{file.resolve()}"  # a config-local file never shadows a package
            if key in sys.modules:
                return sys.modules[key]
            spec = importlib.util.spec_from_file_location(name, file)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {file}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[key] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[key]
                raise
            return module
    return importlib.import_module(name)


def _resolve(path: str, config_dir: Path | None, where: str, what: str) -> Any:
    module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        hint = " (LiteLLM's built-in integrations are not included)" if what == "function" else ""
        raise ConfigError(f"`{where}`: {path!r} is not a module.{what} path{hint}")
    try:
        module = _module(module_name, config_dir)
    except ConfigError:
        raise
    except Exception as exc:  # an import error or an error inside the user's module
        raise ConfigError(f"`{where}`: cannot import {module_name!r} ({type(exc).__name__}: {exc})") from None
    if not hasattr(module, attr):
        raise ConfigError(f"`{where}`: module {module_name!r} has no attribute {attr!r}")
    return getattr(module, attr)


def _entries(spec: str | list[str], where: str) -> list[tuple[str, str]]:
    paths = [spec] if isinstance(spec, str) else spec
    return [(p, where if isinstance(spec, str) else f"{where}[{i}]") for i, p in enumerate(paths)]


def load_functions(spec: str | list[str] | None, config_path: str | None, where: str) -> list[Callable[..., Any]]:
    """Plain logging functions (``success_callback`` and its siblings), in config order."""
    config_dir = Path(config_path).parent if config_path else None
    found = [(_resolve(p, config_dir, w, "function"), p, w) for p, w in _entries(spec or [], where)]
    for fn, path, entry in found:
        if not callable(fn):
            raise ConfigError(f"`{entry}`: {path} is a {type(fn).__name__}, not a function")
    return [fn for fn, _, _ in found]


def load_callback(path: str, config_dir: Path | None, where: str) -> CustomLogger:
    found = _resolve(path, config_dir, where, "instance")
    if not isinstance(found, CustomLogger):
        raise ConfigError(f"`{where}`: {path} is a {type(found).__name__}, not a CustomLogger instance")
    return found


def load_callbacks(spec: str | list[str] | None, config_path: str | None) -> list[CustomLogger]:
    """Every configured callback, in config order."""
    if spec is None:
        return []
    config_dir = Path(config_path).parent if config_path else None
    return [load_callback(p, config_dir, w) for p, w in _entries(spec, "litellm_settings.callbacks")]
