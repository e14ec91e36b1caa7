# Two commands on a fresh machine:  make demo   and   make test
PYTHON ?= python3
VENV := .venv
PIP := $(VENV)/bin/pip
CONSTRAINTS := constraints/ci.txt
PIP_INSTALL := $(PIP) install --progress-bar off -c $(CONSTRAINTS)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint venv clean mutation

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	touch $@

# torch + torchvision first: on this kind of machine only torch 2.14.1 with
# torchvision 0.29.1 imports torchvision (pinned in the constraints file)
$(VENV)/.base: $(VENV)/.created $(CONSTRAINTS)
	$(PIP_INSTALL) torch torchvision "numpy<2" cython wheel "setuptools<80"
	touch $@

$(VENV)/.demo: $(VENV)/.base pyproject.toml
	$(PIP_INSTALL) -e ".[timm,data]"
	touch $@

# escnn needs py3nj (Fortran) and lie_learn, whose build needs numpy already installed;
# the canonicalization example reads Fashion-MNIST from Debian's dataset-fashion-mnist
$(VENV)/.dev: $(VENV)/.base pyproject.toml
	command -v gfortran >/dev/null || ($(SUDO) apt-get update && $(SUDO) apt-get install -y gfortran)
	[ -d /usr/share/datasets/fashion-mnist ] || ($(SUDO) apt-get update && $(SUDO) apt-get install -y dataset-fashion-mnist)
	$(PIP_INSTALL) --no-build-isolation lie_learn
	$(PIP_INSTALL) -e ".[dev]"
	touch $@ $(VENV)/.demo

venv: $(VENV)/.dev

demo: $(VENV)/.demo
	$(VENV)/bin/symwrap demo --output-dir outputs

test: $(VENV)/.dev
	$(VENV)/bin/ruff check symwrap symwrap_bench tests examples tools
	$(VENV)/bin/python -m pytest -n 2 --durations=15

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check symwrap symwrap_bench tests examples tools

# mutation testing, room by room (not in CI: the nine rooms measured so far took about 3 hours on 2 cores):
# ROOMS="groups metrics" for some, AGAIN=1 to re-test only the last run's survivors; the report goes to outputs/mutation/report.md
mutation: $(VENV)/.dev
	$(PIP_INSTALL) -e ".[mutation]"
	$(VENV)/bin/python tools/mutation.py $(if $(AGAIN),--again) $(ROOMS)

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache .hypothesis mutants
