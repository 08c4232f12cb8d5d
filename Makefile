# LPM platform — the two commands of the README, and their parts.
#   make quickstart   set everything up, start the embedded services, run the main job
#   make test         run the test suite (what .ci/run calls)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export LPM_HOME ?= $(CURDIR)/.lpm
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP := $(VENV)/.lpm-installed-$(shell cat requirements/lock.txt pyproject.toml | sha1sum | cut -c1-12)

.PHONY: quickstart setup system-deps up down status run test test-unit test-integration test-slow bench lock clean

quickstart: setup up run

## setup: Debian packages (espeak-ng, chromium), virtualenv, locked dependencies, the project itself (idempotent)
setup: system-deps $(STAMP)

system-deps:
	@command -v espeak-ng >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq espeak-ng; }
	@# headless Chromium + chromedriver for the rating page's browser test (tests/quality/test_rating_browser.py)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { $(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

$(STAMP): requirements/lock.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -r requirements/lock.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.lpm-installed-* && touch $@

up: setup
	$(BIN)/lpm services up

down:
	$(BIN)/lpm services down

status:
	$(BIN)/lpm services status

## run: the main job (the whole lineage on the embedded default)
run: setup
	$(BIN)/lpm run --no-services

## test: everything but the long scenarios (marker `slow`)
test: setup
	$(BIN)/python -m pytest -m "not slow" -p no:cacheprovider $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/python -m pytest -m "not slow and not integration" $(PYTEST_ARGS)

test-integration: setup
	$(BIN)/python -m pytest -m "integration and not slow" $(PYTEST_ARGS)

test-slow: setup
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

## bench: platform benchmarks that print their figures
bench: setup
	$(BIN)/lpm corpus bench
	$(BIN)/lpm services bench

## lock: re-resolve requirements/base.in into requirements/lock.txt
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv && .lock-venv/bin/pip install -q -r requirements/base.in
	.lock-venv/bin/pip freeze --exclude-editable > requirements/lock.txt && rm -rf .lock-venv

clean: down
	rm -rf $(LPM_HOME)
