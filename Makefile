# restaurant_actions — set-up, report, tests, benchmarks.  `make help` lists the targets.
PYTHON   ?= python3
VENV     ?= .venv
PROFILE  ?= quick
SEEDS    ?= 0
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.docs-installed

.PHONY: all install report test test-all bench docs export clean-nbs sync help
all: install

help:
	@echo "make            set up $(VENV) (pinned, editable install; quick when nothing changed)"
	@echo "make report     run the experiment notebooks with papermill into runs/<PROFILE>/ (PROFILE=$(PROFILE))"
	@echo "make test       run every notebook and tests/ with pytest (slow/gpu cells skipped)"
	@echo "make test-all   same, with the slow cells too"
	@echo "make bench      run the benchmarks in bench/"
	@echo "make docs       build the documentation site into _docs/ (open _docs/index.html); runs no test cell"
	@echo "make sync       nbdev_export + nbdev_clean after editing notebooks"

install: $(STAMP)

# Re-installs only when the dependency files change.
$(STAMP): settings.ini setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

report: $(STAMP)
	$(BIN)/restaurant-actions report --profile $(PROFILE) --seeds $(SEEDS)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 tests

test-all: $(STAMP)
	RESTAURANT_ACTIONS_TEST_FLAGS="slow" $(BIN)/python -m pytest -n 2 tests

bench: $(STAMP)
	@for f in bench/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

sync: $(STAMP)
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean

# The docs extra (quarto-cli) is tried once: its PyPI package is a source package that downloads the Quarto binary
# from GitHub while it builds. Without Quarto, tools/build_docs.py renders the same processed pages with nbconvert.
$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[docs]" \
	  || echo "make docs: quarto-cli did not install here; the pages are rendered with nbconvert"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(BIN)/python tools/build_docs.py
