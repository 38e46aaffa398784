"""Architecture rules from DESIGN.md, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

from asgi_llm import parse_config
from asgi_llm.gateway import Gateway

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


CORE = sorted((ROOT / "asgi_llm").rglob("*.py"))  # every subpackage: a flat glob would skip them


def test_the_walk_sees_the_subpackages() -> None:
    assert {p.parent.name for p in CORE} >= {"asgi_llm", "hooks", "request", "sse", "upstream", "observe",
                                             "prompts", "config"}


def test_core_never_imports_middlewares_except_the_assembly() -> None:
    for path in CORE:
        if path.name != "gateway.py":
            assert not any(n.split(".")[0] == "middlewares" for n in _imports(path)), path


def test_middlewares_use_only_public_core_names_from_submodules() -> None:
    for path in (ROOT / "middlewares").glob("*.py"):
        for name in _imports(path) - {"__future__"}:
            assert not any(part.startswith("_") for part in name.split(".")), f"{path.name} imports {name}"
            assert name != "asgi_llm", f"{path.name} imports the package root: the assembly imports middlewares"


def test_the_package_root_is_curated() -> None:
    import asgi_llm

    assert asgi_llm.__all__ == sorted(asgi_llm.__all__)
    assert "__getattr__" not in vars(asgi_llm)  # no lazy-import trick: the imports run one way
    for name in ("CustomLogger", "CustomPromptManagement", "UserAPIKeyAuth", "DualCache", "create_app", "Errors",
                 "Ingest", "UpstreamApp", "ModelResponse", "acompletion"):
        assert name in asgi_llm.__all__


def test_middlewares_export_every_layer() -> None:
    import importlib
    import inspect

    import middlewares

    for path in (ROOT / "middlewares").glob("*.py"):
        module = importlib.import_module(f"middlewares.{path.stem}")
        for name, value in vars(module).items():
            if isinstance(value, type) and value.__module__ == module.__name__ \
                    and inspect.iscoroutinefunction(value.__call__):
                assert name in middlewares.__all__, f"middlewares does not export {name}"


def test_no_base_http_middleware_and_modules_stay_small() -> None:
    for path in [*CORE, *(ROOT / "middlewares").glob("*.py")]:
        text = path.read_text()
        assert "BaseHTTPMiddleware" not in text, path.name
        assert len(text.splitlines()) <= 300, f"{path.name} has grown past one concern"  # ~300: a guide


def test_default_stack_order() -> None:
    config = {"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}]}
    assert Gateway(parse_config(config)).layers == ["Errors", "Ingest", "UpstreamApp"]
    config["general_settings"] = {"master_key": "k", "enforce_user_param": True}
    config["litellm_settings"] = {"callbacks": ["examples.custom_callbacks.proxy_handler_instance",
                                                "examples.custom_prompt.prompt_management"]}
    gateway = Gateway(parse_config(config))
    assert gateway.layers == ["Errors", "Ingest", "Auth", "EnforceUserParam", "CallHooks",
                              "PromptTemplating", "UpstreamApp"]  # pre-call hooks before prompts, as LiteLLM
    found, app = [], gateway.app
    while app is not None:  # walk the real objects, not the names
        found.append(type(app).__name__)
        app = getattr(app, "app", None)
    assert found == gateway.layers


def test_moderation_sits_after_call_hooks() -> None:
    from typing import Any

    from asgi_llm import CustomLogger

    class Both(CustomLogger):
        async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: Any, call_type: Any) -> Any:
            return data

        async def async_moderation_hook(self, data: Any, user_api_key_dict: Any, call_type: Any) -> Any:
            return None

    config = {"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}]}
    gateway = Gateway(parse_config(config), callbacks=[Both()])
    assert gateway.layers == ["Errors", "Ingest", "CallHooks", "Moderation", "UpstreamApp"]


def test_every_provider_the_config_accepts_has_an_implementation() -> None:
    """config.PROVIDERS (config cannot import upstream) and the provider registry name the same set."""
    from asgi_llm.config.load import PROVIDERS, UpstreamSettings
    from asgi_llm.upstream.forward import Forwarder
    from asgi_llm.upstream.providers import providers

    assert set(providers(Forwarder(UpstreamSettings()))) == set(PROVIDERS)
