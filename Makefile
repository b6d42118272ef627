# Two commands, from a fresh clone:
#   make run    set up (once) and run the default grid, then write its report
#   make test   set up (once) and run the tests
# Set-up = a virtual environment in .venv with the pinned dependencies and the package (editable),
# with the test tools. SLURM clusters also need the executor plugin: pip install -e ".[slurm]"
# (left out here: every snakemake start imports an installed executor plugin, which slows planning).

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= config.yaml
CORES ?= all
SNAKEMAKE_ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup run report style test test-all lint clean gpu-check

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG) $(SNAKEMAKE_ARGS)
	$(MAKE) --no-print-directory report CONFIG=$(CONFIG)

report: $(STAMP)
	$(BIN)/snakemake --configfile $(CONFIG) --report \
	  results/$$($(BIN)/python -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['experiment'])" $(CONFIG))/report.html

# The test command checks style first (ruff lint + format, snakefmt for the rules), then runs pytest.
style: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules

test: style
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest -m "slow or not slow" $(PYTEST_ARGS)

lint: style
	$(BIN)/snakemake --lint

clean:
	rm -rf results/*/ resources logs .snakemake

# GPU acceptance check (bench/gpu_check.py): at most 8 minutes on one GPU; writes
# bench/results/gpu_check.json and its rows in BENCHMARKS.md.
gpu-check: $(STAMP)
	PYTHON=$(BIN)/python bench/gpu_check.sh
