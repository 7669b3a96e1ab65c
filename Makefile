# EventDesk: `make run` sets up and launches the app; `make test` sets up and runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test setup setup-test peers lint bench soak screenshot clean icons bundle install-desktop uninstall-desktop

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

# Byte-compiled like a pip install is: this machine sets PYTHONDONTWRITEBYTECODE, and without
# it every `eventdesk` start compiles the package again (~70 ms of each `run`).
setup: $(STAMP)
	@$(BIN)/python -m compileall -q eventdesk

peers: tests/peers/node_modules/.package-lock.json

tests/peers/node_modules/.package-lock.json: tests/peers/package-lock.json
	cd tests/peers && npm ci --no-audit --no-fund --loglevel=error

run: setup
	$(BIN)/eventdesk

lint: setup
	$(BIN)/ruff check eventdesk tests
	$(BIN)/ruff format --check eventdesk tests
	$(BIN)/mypy
	$(BIN)/lint-imports

test: setup peers lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

# Benchmarks print figures beside their references and targets (issues 3-6); about 30 minutes
# (the pipeline alone about 11: 9 rounds, each live measurement on a fresh source).
bench: setup peers
	$(BIN)/python -m tests.bench.pipeline
	$(BIN)/python -m tests.bench.export
	$(BIN)/python -m tests.bench.webhook
	$(BIN)/python -m tests.bench.postgres
	$(BIN)/python -m tests.bench.nats
	$(BIN)/python -m tests.bench.nats_source
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m tests.bench.app_feed
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m tests.bench.app_history
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m tests.bench.app_detail
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m tests.bench.app_launch

# The window idle, then trickled, for MINUTES each: CPU, RSS drift, wake-ups, still rendering.
MINUTES ?= 10
soak: setup peers
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m tests.bench.app_soak --minutes $(MINUTES)

# Packaging (packaging/README.md). Icons: the SVGs live once, in eventdesk/ui/icon_files/; re-render
# the desktop PNGs (resources/icons/hicolor) after editing eventdesk.svg there.
icons: setup
	$(BIN)/python packaging/build_icons.py

# The self-contained one-folder app: dist/eventdesk/eventdesk
bundle: setup
	$(BIN)/pyinstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller packaging/eventdesk.spec

# Menu entry, icons and AppStream metainfo for this user. The entry starts EVENTDESK_EXEC:
# the venv's command by default, or the bundle's (EVENTDESK_EXEC=$(CURDIR)/dist/eventdesk/eventdesk).
XDG_DATA_HOME ?= $(HOME)/.local/share
EVENTDESK_EXEC ?= $(abspath $(BIN)/eventdesk)
ICON_SIZES := 16 22 24 32 48 64 128 256 512

install-desktop:
	@test -x "$(EVENTDESK_EXEC)" || { echo "$(EVENTDESK_EXEC) is not executable: run make setup, or make bundle and pass EVENTDESK_EXEC=$(CURDIR)/dist/eventdesk/eventdesk" >&2; exit 1; }
	install -d "$(XDG_DATA_HOME)/applications" "$(XDG_DATA_HOME)/metainfo"
	sed -e 's|^Exec=.*|Exec="$(EVENTDESK_EXEC)"|' -e 's|^TryExec=.*|TryExec=$(EVENTDESK_EXEC)|' \
		resources/eventdesk.desktop > "$(XDG_DATA_HOME)/applications/eventdesk.desktop"
	install -m 644 resources/io.github.eventdesk.EventDesk.metainfo.xml "$(XDG_DATA_HOME)/metainfo/"
	for size in $(ICON_SIZES); do \
		install -D -m 644 resources/icons/hicolor/$${size}x$${size}/apps/eventdesk.png \
			"$(XDG_DATA_HOME)/icons/hicolor/$${size}x$${size}/apps/eventdesk.png"; done
	install -D -m 644 eventdesk/ui/icon_files/eventdesk.svg \
		"$(XDG_DATA_HOME)/icons/hicolor/scalable/apps/eventdesk.svg"
	-command -v update-desktop-database >/dev/null && update-desktop-database -q "$(XDG_DATA_HOME)/applications"
	-command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q -t "$(XDG_DATA_HOME)/icons/hicolor"

uninstall-desktop:
	rm -f "$(XDG_DATA_HOME)/applications/eventdesk.desktop" \
		"$(XDG_DATA_HOME)/metainfo/io.github.eventdesk.EventDesk.metainfo.xml" \
		"$(XDG_DATA_HOME)/icons/hicolor/scalable/apps/eventdesk.svg"
	for size in $(ICON_SIZES); do rm -f "$(XDG_DATA_HOME)/icons/hicolor/$${size}x$${size}/apps/eventdesk.png"; done
	-command -v update-desktop-database >/dev/null && update-desktop-database -q "$(XDG_DATA_HOME)/applications"

clean:
	rm -rf $(VENV) tests/peers/node_modules
