# One-command entry points (see README). Everything installs into ./.venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8501
# Test processes: one test file per process (pytest-xdist), as many as the machine has cores.
TEST_WORKERS ?= auto

.PHONY: setup app workshop lint unit test browser-deps bench clean-venv

setup: $(VENV)/.installed

# The project, editable, with its dev tools and the optional `gguf` reader and Ray (the GGUF and Ray
# executor tests need them; the app and the CLI do not). torch is pinned in pyproject.toml, so pip
# takes the CPU wheel that lies on disk here instead of pulling a CUDA build.
$(VENV)/.installed: pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,gguf,ray,mlflow,tensorboard]'
	touch $@

# Set up, then launch the workbench on the sample pairs at http://127.0.0.1:$(PORT)
# (`python -m app` binds to 127.0.0.1 unless given --address; see README "Safety").
app: setup
	$(BIN)/python -m app --port $(PORT)

# A shared workshop server for a class (README "Scaling out" > "Workshop server"): a workspace per
# browser session, parallel workers, an Instructor page; reachable from other machines.
workshop: setup
	$(BIN)/python -m app --workshop --address 0.0.0.0 --port $(PORT)

# Lint, format check and type check (ruff and mypy read their settings from pyproject.toml).
lint: setup
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .
	$(BIN)/python -m mypy

# The quick loop: every test but the slow and the browser ones.
unit: setup
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow and not browser"

# Debian's chromium drives the browser tests (playwright cannot download browsers here).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

# Set up, lint, then run the whole test suite (unit, page and real-browser tests).
test: setup browser-deps lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

bench: setup
	for f in bench/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean-venv:
	rm -rf $(VENV)
