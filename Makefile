# payhub — the two commands a new user needs are `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BUF_VERSION := 1.75.0
BUF := .tools/node_modules/.bin/buf
# apt-get needs root; as another user set SUDO=sudo
SUDO ?=

.PHONY: run browser test test-fast gen gen-check lint typecheck proto-check buf-baseline bench bench-quick ci clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## run: migrate a local SQLite database, seed the demo merchant, start every service
run: $(STAMP)
	$(VENV)/bin/payhub migrate
	$(VENV)/bin/payhub demo seed
	exec $(VENV)/bin/payhub serve

## browser: Debian's headless Chromium, its driver and a CJK font (the zh-CN page's screenshots) for the
## cashier's browser tests; nothing is downloaded but Debian packages
BROWSER_PACKAGES := chromium chromium-driver fonts-wqy-microhei
browser:
	@test -x /usr/bin/chromedriver -a -x /usr/bin/chromium -a -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc || { \
	  echo "installing Debian's $(BROWSER_PACKAGES) for the browser tests"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(BROWSER_PACKAGES); }

## test: the whole suite (unit, integration on SQLite and PostgreSQL, end-to-end, the cashier in a browser)
test: $(STAMP) browser
	$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -x -q -m "not e2e and not slow" $(PYTEST_ARGS)

## gen: regenerate gen/ from protos/
gen: $(STAMP)
	PY=$(PY) tools/gen.sh

gen-check: gen
	git diff --exit-code --stat -- gen || (echo "gen/ is stale: run 'make gen' and commit" && exit 1)
	test -z "$$(git status --porcelain -- gen)" || (git status --porcelain -- gen; echo "gen/ has untracked files: run 'make gen' and commit"; exit 1)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

$(BUF):
	mkdir -p .tools && npm install --silent --no-audit --no-fund --prefix .tools @bufbuild/buf@$(BUF_VERSION)

## proto-check: buf lint (STANDARD + COMMENTS), buf format, buf breaking against the committed baseline
proto-check: $(BUF)
	$(BUF) lint
	$(BUF) format -d --exit-code
	$(BUF) breaking --against contract/baseline.binpb

## buf-baseline: record the current contract as the baseline `buf breaking` compares against
buf-baseline: $(BUF)
	$(BUF) build -o contract/baseline.binpb

bench: $(STAMP)
	$(PY) -m payhub.bench $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(PY) -m payhub.bench --quick $(BENCH_ARGS)

ci: proto-check gen-check lint typecheck test

clean:
	rm -rf $(VENV) .tools var .pytest_cache .mypy_cache .ruff_cache
