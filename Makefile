# Two commands on a fresh machine with python3 and make: `make run`, `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
CODE   := asgi_llm middlewares

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/asgi-llm --config examples/config.yaml --port $${PORT:-4000}

lint: $(STAMP)
	$(VENV)/bin/ruff check $(CODE) tests examples bench
	$(VENV)/bin/mypy --strict $(CODE)

# the suite starts its own redis-server (Debian's package, installed when missing; CI runs as root)
test: lint
	@command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null
	@command -v redis-server >/dev/null || (echo "make test needs redis-server (apt-get install redis-server)"; exit 1)
	$(PY) -m pytest

bench: $(STAMP)
	@command -v wrk >/dev/null && command -v valgrind >/dev/null && command -v redis-server >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq wrk valgrind redis-server) >/dev/null
	$(PY) bench/run.py
	$(PY) bench/instructions.py
	$(PY) bench/streams.py

clean:
	rm -rf $(VENV) build *.egg-info
