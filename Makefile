# storefs: `make demo` shows it working, `make test` runs every test.
GO ?= go
export PATH := $(PATH):/usr/local/go/bin
FUZZTIME ?= 10s
BIN := bin/storefs
# storefs --version prints this; without it, what Go stamped into the binary.
VERSION ?= $(shell git describe --always --dirty 2>/dev/null)

.PHONY: all build deps test bench fuzz demo install clean

all: build

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/storefs

# Installs what is missing (apt-get), then nothing more.
deps:
	@./scripts/deps.sh

# Every test, integration included. Nothing skips: a missing dependency is
# installed by deps, and a test that still lacks one fails. Then the
# concurrent packages again under the race detector, and the engine on one
# thread too, where some interleavings show up only.
RACE_PKGS := ./goals/ ./store/... ./fusefs/ ./realise/ ./daemon/
test: deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 40m ./...
	$(GO) test -race -count=1 -timeout 20m $(RACE_PKGS)
	GOMAXPROCS=1 $(GO) test -race -count=1 -timeout 20m ./goals/

# storefs against real Nix (or native) on the same work in one run; each
# benchmark prints its ratio.
bench: deps
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x -timeout 60m ./...

fuzz:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

demo: deps build
	@./scripts/demo.sh $(BIN)

# The binary, the mount(8) helper for /etc/fstab and the systemd unit.
install: build
	install -m 0755 $(BIN) /usr/local/bin/storefs
	install -m 0755 dist/mount.storefs /sbin/mount.storefs
	install -m 0644 dist/storefs.service /etc/systemd/system/storefs.service

clean:
	rm -rf bin
