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

# The `dot` binary of Graphviz (the pip package is only the bindings). Installed with apt when we are root;
# otherwise we say how and go on: every diagram falls back to matplotlib.
dot:
	@if command -v dot >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's graphviz for the 'dot' binary"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null) \
	    || echo "apt-get could not install graphviz; diagrams will use the matplotlib fallback"; \
	else echo "note: 'dot' not found. Install Graphviz (apt install graphviz / brew install graphviz /" \
	  "conda install -c conda-forge graphviz); diagrams fall back to matplotlib meanwhile."; fi

# nbval runs the notebooks with their solutions; the student copies (notebooks/student/) run once, under papermill,
# in tests/test_student.py, so nbval skips them.
test: $(STAMP) dot chromium
	COURSE_RUN_MODE=smoke $(BIN)/python -m pytest -q tests notebooks --ignore=notebooks/student --nbval-lax \
	  --nbval-current-env -p no:cacheprovider --durations=25

# Headless Chromium for the browser tests (tests/test_browser_widgets.py, tests/test_site.py), installed like `dot`:
# Debian's package with apt when we are root; otherwise we say how, and those tests skip with that reason.
chromium:
	@if [ -n "$$COURSE_CHROMIUM" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "apt-get could not install chromium; the browser tests will skip"; \
	else echo "note: no Chromium found. Install it (apt install chromium / brew install --cask chromium)," \
	  "or set COURSE_CHROMIUM to a Chromium binary; the browser tests skip meanwhile."; fi

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
