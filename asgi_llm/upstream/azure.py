"""``AzureProvider``: Azure OpenAI (``azure/<deployment>``), forwarded in Azure's URL and auth forms.

- URL: ``<api_base>/openai/deployments/<deployment><route>?api-version=<api_version>``
  for chat, completions, embeddings, images and audio; with ``api_version: v1`` (also
  ``latest``/``preview``), Azure's v1 form ``<api_base>/openai/v1<route>`` with the
  deployment as the body's ``model``. The default version is ``DEFAULT_API_VERSION``
  (``AZURE_API_VERSION`` when set).
- Auth: the deployment's key as ``api-key``, or ``azure_ad_token`` as a bearer token.
- Answers are OpenAI's shape already; a content-filter refusal (Azure's ``code:
  content_filter``, HTTP 400) is answered as OpenAI's ``content_policy_violation``, which
  the router's ``content_policy_fallbacks`` act on.
"""

from __future__ import annotations

import os

import msgspec

from asgi_llm.request.errors import GatewayError
from asgi_llm.types import Scope, Send
from asgi_llm.upstream.forward import request_headers
from asgi_llm.upstream.providers import ForwardingProvider, UpstreamCall
from asgi_llm.upstream.router import Deployment

DEFAULT_API_VERSION = "2024-10-21"  # Azure OpenAI's current GA data-plane version
V1 = frozenset({"v1", "latest", "preview"})
_encode = msgspec.json.Encoder().encode


class AzureProvider(ForwardingProvider):
    """See the module docstring."""

    uploads = True

    def url(self, dep: Deployment, path: str) -> str:
        version = dep.api_version or os.environ.get("AZURE_API_VERSION") or DEFAULT_API_VERSION
        if version in V1:
            return f"{dep.api_base}/openai/v1{path}"
        return f"{dep.api_base}/openai/deployments/{dep.model}{path}?api-version={version}"

    def headers(self, dep: Deployment, scope: Scope, content_type: str | None) -> dict[str, str]:
        """Azure's auth: ``api-key``, or an Entra ID token as the bearer token (uploads too)."""
        headers = request_headers(dep, scope["headers"], content_type)
        headers.pop("authorization", None)
        if dep.ad_token:
            headers["authorization"] = f"Bearer {dep.ad_token}"
        elif dep.api_key:
            headers["api-key"] = dep.api_key
        return headers

    async def answer(self, call: UpstreamCall, send: Send) -> None:
        dep = call.dep
        try:
            await self.forward(call, _encode(call.body), self.headers(dep, call.scope, None), send)
        except GatewayError as err:
            if err.code == "content_filter" or "content management policy" in err.message:
                raise content_policy(err) from None
            raise


def content_policy(err: GatewayError) -> GatewayError:
    """Azure's content-filter refusal in OpenAI's shape."""
    return GatewayError(err.status, err.message, param=err.param, code="content_policy_violation",
                        type="invalid_request_error", headers=err.headers)
