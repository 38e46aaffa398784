"""``python -m asgi_llm`` is the ``asgi-llm`` command."""

import sys

from asgi_llm.cli import main

sys.exit(main())
