# Two commands do all the set-up on a fresh machine: `make test` and `make reproduce` (plus `make lab`).
# Each creates .venv and installs the project into it when missing. The tested versions are in constraints.txt.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
MODE   ?= auto

.PHONY: test reproduce lab dot bench student gpu-campaign clean-venv chromium site

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,site]"
	@touch $(STAMP)

# A tool from a Debian package, installed the same way for every such tool: nothing when `$(1)` finds it; apt-get when
# we are root; otherwise one note on how to install it, and we go on. $(1) the shell test that finds it, $(2) the
# Debian package, $(3) what it is for, $(4) what happens without it, $(5) how to install it elsewhere.
define apt_or_note
	@if $(1); then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's $(2) $(3)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null) \
	    || echo "apt-get could not install $(2); $(4)"; \
	else echo "note: $(5); $(4) meanwhile."; fi
endef

# The `dot` binary of Graphviz (the pip package is only the bindings): every diagram falls back to matplotlib.
dot:
	$(call apt_or_note,command -v dot >/dev/null 2>&1,graphviz,for the 'dot' binary,diagrams use the matplotlib \
	  fallback,'dot' not found. Install Graphviz (apt install graphviz / brew install graphviz / conda install -c \
	  conda-forge graphviz))

# nbval runs the notebooks with their solutions; the student copies (notebooks/student/) run once, under papermill,
# in tests/test_student.py, so nbval skips them.
test: $(STAMP) dot chromium
	COURSE_RUN_MODE=smoke $(BIN)/python -m pytest -q tests notebooks --ignore=notebooks/student --nbval-lax \
	  --nbval-current-env -p no:cacheprovider --durations=25

# Headless Chromium for the browser tests (tests/test_browser_widgets.py, tests/test_site.py), installed like `dot`;
# without it those tests skip with that reason.
CHROMIUM_FOUND := [ -n "$$COURSE_CHROMIUM" ] || command -v chromium >/dev/null 2>&1 || \
	command -v chromium-browser >/dev/null 2>&1
chromium:
	$(call apt_or_note,$(CHROMIUM_FOUND),chromium,for the browser tests,the browser tests skip,no Chromium found. \
	  Install it (apt install chromium / brew install --cask chromium) or set COURSE_CHROMIUM to a Chromium binary)

# The course site (Sphinx + myst-nb) from the notebooks executed in smoke mode -> runs/site/html/index.html.
# Reuse an earlier smoke execution with: make site ARGS="--executed runs/smoke"
site: $(STAMP) dot
	$(BIN)/python -m course_lib site --out runs/site $(ARGS)

reproduce: $(STAMP) dot
	$(BIN)/python -m course_lib reproduce --mode $(MODE) --out runs

# Training/eval throughput of the course's loop against a textbook PyTorch loop, side by side (1-2 minutes on
# 2 CPU cores; the first run on a machine also compiles, when compile is chosen). Options: make bench ARGS="--quick".
bench: $(STAMP)
	$(BIN)/python -m course_lib bench --out runs/bench/bench.json $(ARGS)

# The student copies: every notebook cell tagged `solution` replaced by a stub (commit the result).
student: $(STAMP)
	$(BIN)/python -m course_lib student --write

# One CUDA GPU: the bench, then a CIFAR-10 channel- vs layer-wise sweep, within MINUTES (default 10); pass/fail of its
# two targets printed, runs/gpu_campaign/campaign.json and data/reference/cifar10_gpu.json written. Run it again to
# resume what the budget stopped. Options: make gpu-campaign MINUTES=20 ARGS="--workers 6 --data DIR".
MINUTES ?= 10
gpu-campaign: $(STAMP)
	$(BIN)/python -m course_lib gpu-campaign --minutes $(MINUTES) --write-reference $(ARGS)

lab: $(STAMP) dot
	$(BIN)/jupyter lab notebooks/

clean-venv:
	rm -rf $(VENV)
