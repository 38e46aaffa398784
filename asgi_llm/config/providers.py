"""The provider prefixes a deployment's ``model`` may name, with LiteLLM's defaults.

Each prefix says how its calls are made (``kind``: an OpenAI-compatible server, Azure
OpenAI, Anthropic's Messages API, the in-process mock, a Langfuse prompt source), the
``api_base`` used when the config gives none, and the environment variables read for
the key (and the base) when the config gives none. A prefix with no default base needs
``api_base`` in the config.
"""

from __future__ import annotations

import os
from typing import NamedTuple


class ProviderSpec(NamedTuple):
    kind: str  # openai, azure, anthropic, mock, langfuse
    base: str | None  # the default api_base
    key_env: str | None  # where the key comes from when the config has none
    base_env: str | None = None  # where the base comes from when the config has none


OPENAI_BASE = "https://api.openai.com/v1"

CATALOGUE: dict[str, ProviderSpec] = {
    "openai": ProviderSpec("openai", OPENAI_BASE, None),
    "text-completion-openai": ProviderSpec("openai", OPENAI_BASE, "OPENAI_API_KEY"),
    "hosted_vllm": ProviderSpec("openai", None, "HOSTED_VLLM_API_KEY", "HOSTED_VLLM_API_BASE"),
    "vllm": ProviderSpec("openai", None, "HOSTED_VLLM_API_KEY", "HOSTED_VLLM_API_BASE"),
    "ollama": ProviderSpec("openai", "http://localhost:11434/v1", "OLLAMA_API_KEY", "OLLAMA_API_BASE"),
    "ollama_chat": ProviderSpec("openai", "http://localhost:11434/v1", "OLLAMA_API_KEY", "OLLAMA_API_BASE"),
    "lm_studio": ProviderSpec("openai", "http://localhost:1234/v1", "LM_STUDIO_API_KEY", "LM_STUDIO_API_BASE"),
    "llamafile": ProviderSpec("openai", "http://127.0.0.1:8080/v1", "LLAMAFILE_API_KEY", "LLAMAFILE_API_BASE"),
    "groq": ProviderSpec("openai", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    "deepseek": ProviderSpec("openai", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
    "mistral": ProviderSpec("openai", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    "together_ai": ProviderSpec("openai", "https://api.together.xyz/v1", "TOGETHERAI_API_KEY"),
    "fireworks_ai": ProviderSpec("openai", "https://api.fireworks.ai/inference/v1", "FIREWORKS_AI_API_KEY"),
    "openrouter": ProviderSpec("openai", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    "xai": ProviderSpec("openai", "https://api.x.ai/v1", "XAI_API_KEY"),
    "perplexity": ProviderSpec("openai", "https://api.perplexity.ai", "PERPLEXITYAI_API_KEY"),
    "deepinfra": ProviderSpec("openai", "https://api.deepinfra.com/v1/openai", "DEEPINFRA_API_KEY"),
    "cerebras": ProviderSpec("openai", "https://api.cerebras.ai/v1", "CEREBRAS_API_KEY"),
    "nvidia_nim": ProviderSpec("openai", "https://integrate.api.nvidia.com/v1", "NVIDIA_NIM_API_KEY"),
    "azure": ProviderSpec("azure", None, "AZURE_API_KEY", "AZURE_API_BASE"),
    "anthropic": ProviderSpec("anthropic", "https://api.anthropic.com", "ANTHROPIC_API_KEY"),
    "mock": ProviderSpec("mock", None, None),
    "langfuse": ProviderSpec("langfuse", None, None),  # langfuse/<model_name>: prompt from Langfuse
}

PROVIDERS = tuple(CATALOGUE)
LOCAL = frozenset({"mock", "langfuse"})  # answered in-process: no base, no key


def default_base(prefix: str) -> str | None:
    spec = CATALOGUE[prefix]
    found = os.environ.get(spec.base_env) if spec.base_env else None
    return found or spec.base


def default_key(prefix: str) -> str | None:
    spec = CATALOGUE[prefix]
    return os.environ.get(spec.key_env) or None if spec.key_env else None
