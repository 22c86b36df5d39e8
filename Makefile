# Two commands do all the set-up on a fresh machine: `make test` and `make reproduce` (plus `make lab`).
# Each creates .venv and installs the project into it when missing. The tested versions are in constraints.txt.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
MODE   ?= auto

.PHONY: test reproduce lab dot bench gpu-campaign clean-venv

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
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

test: $(STAMP) dot
	COURSE_RUN_MODE=smoke $(BIN)/python -m pytest -q tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider

reproduce: $(STAMP) dot
	$(BIN)/python -m course_lib reproduce --mode $(MODE) --out runs

# Training/eval throughput of the course's loop against a textbook PyTorch loop, side by side (1-2 minutes on
# 2 CPU cores; the first run on a machine also compiles, when compile is chosen). Options: make bench ARGS="--quick".
bench: $(STAMP)
	$(BIN)/python -m course_lib bench --out runs/bench/bench.json $(ARGS)

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
