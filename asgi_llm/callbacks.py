"""Load ``litellm_settings.callbacks``: ``module.instance`` paths to ``CustomLogger`` objects.

The module is looked up first as a file beside the config (``custom_callbacks.py``
next to ``config.yaml``, dots meaning folders), as LiteLLM does, then on
``sys.path``. A path that does not resolve, or an object that is not a
``CustomLogger``, raises ``ConfigError`` naming the entry.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from asgi_llm.config import ConfigError
from asgi_llm.hooks import CustomLogger


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


def load_callback(path: str, config_dir: Path | None, where: str) -> CustomLogger:
    module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"`{where}`: {path!r} is not a module.instance path")
    try:
        module = _module(module_name, config_dir)
    except ConfigError:
        raise
    except Exception as exc:  # an import error or an error inside the user's module
        raise ConfigError(f"`{where}`: cannot import {module_name!r} ({type(exc).__name__}: {exc})") from None
    if not hasattr(module, attr):
        raise ConfigError(f"`{where}`: module {module_name!r} has no attribute {attr!r}")
    found: Any = getattr(module, attr)
    if not isinstance(found, CustomLogger):
        raise ConfigError(f"`{where}`: {path} is a {type(found).__name__}, not a CustomLogger instance")
    return found


def load_callbacks(spec: str | list[str] | None, config_path: str | None) -> list[CustomLogger]:
    """Every configured callback, in config order."""
    if spec is None:
        return []
    paths = [spec] if isinstance(spec, str) else spec
    config_dir = Path(config_path).parent if config_path else None
    where = "litellm_settings.callbacks"
    return [load_callback(p, config_dir, where if isinstance(spec, str) else f"{where}[{i}]")
            for i, p in enumerate(paths)]
