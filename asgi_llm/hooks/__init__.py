"""The hook API: what users subclass, receive and call, with LiteLLM's names.

``CustomLogger`` (every hook, documented per method), ``UserAPIKeyAuth`` (the caller),
``DualCache`` (the cache hooks get), the prompt-manager API, the response views handed
to hooks (``ModelResponse``...), and ``acompletion`` for hooks that consult a model.
"""
