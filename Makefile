# Two commands on a fresh machine: `make run` (the bot, once .env is filled in) and `make test` (every test).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench demo install

$(BIN)/sora-bot: pyproject.toml packages/fake-discord/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e packages/fake-discord -e '.[dev]'  # the local Discord (pip takes no relative path in extras)
	@touch $@

install: $(BIN)/sora-bot

run: install
	$(BIN)/sora-bot run

demo: install
	$(BIN)/sora-bot demo

# The static checks first (fast, and each names the rule it enforces): ruff (style, and `discord` banned outside
# the Discord side), mypy (strict, bot/ cogs/ storage/), vulture (dead code); then every test.
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/vulture

test: lint
	$(BIN)/pytest -q

bench: install
	$(BIN)/python benchmarks/run_all.py
