# Two commands on a fresh machine:  make demo   and   make test
PYTHON ?= python3
VENV := .venv
PIP := $(VENV)/bin/pip
CONSTRAINTS := constraints/ci.txt
PIP_INSTALL := $(PIP) install --progress-bar off -c $(CONSTRAINTS)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint venv clean mutation equiadapt-env docs-check

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

# equiadapt 0.1.2 beside symwrap, for `.venv-equiadapt/bin/python -m symwrap bench canonicalization` (never a symwrap
# dependency): a venv that sees the main .venv's packages through a .pth (site.addsitedir, so its editable symwrap
# install works too), plus equiadapt without its dependencies and the three it imports that .venv lacks (kornia,
# e2cnn, omegaconf; it declares hydra-core but never imports it). Its wheel also installs top-level tests/, docs/
# and examples/ packages: they land here only.
EQUIADAPT_VENV := .venv-equiadapt
EQUIADAPT_PACKAGES := equiadapt==0.1.2 kornia==0.8.1 kornia-rs==0.1.9 e2cnn==0.2.3 omegaconf==2.3.0 antlr4-python3-runtime==4.9.3
$(EQUIADAPT_VENV)/.created: $(VENV)/.dev
	$(VENV)/bin/python -m venv $(EQUIADAPT_VENV)
	$(VENV)/bin/python -c "import site; print(f'import site; site.addsitedir({site.getsitepackages()[0]!r})')" \
		> $$($(EQUIADAPT_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/symwrap-main-venv.pth
	$(EQUIADAPT_VENV)/bin/pip install --progress-bar off --no-deps $(EQUIADAPT_PACKAGES)
	$(EQUIADAPT_VENV)/bin/python -c "import equiadapt, symwrap, timm, escnn; print('equiadapt', equiadapt.__file__)"
	touch $@

equiadapt-env: $(EQUIADAPT_VENV)/.created

venv: $(VENV)/.dev

demo: $(VENV)/.demo
	$(VENV)/bin/symwrap demo --output-dir outputs

test: $(VENV)/.dev
	$(VENV)/bin/ruff check symwrap symwrap_bench tests examples tools
	$(VENV)/bin/python -m pytest -n 2 --durations=15

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check symwrap symwrap_bench tests examples tools

# the docs site: a strict mkdocs build, every local link and image of it, and Debian's chromium rendering pages
# headless (installed here, not in CI's venv: about 2 minutes and 0.5 GB; without it tests/test_docs.py skips
# only the browser test); SYMWRAP_REQUIRE_BROWSER=1 turns that skip into a failure
docs-check: $(VENV)/.dev
	command -v chromium >/dev/null || ($(SUDO) apt-get update && $(SUDO) apt-get install -y chromium)
	SYMWRAP_REQUIRE_BROWSER=1 $(VENV)/bin/python -m pytest -p no:cacheprovider -q -rs tests/test_docs.py

# mutation testing, room by room (not in CI: the nine rooms measured so far took about 3 hours on 2 cores):
# ROOMS="groups metrics" for some, AGAIN=1 to re-test only the last run's survivors; the report goes to outputs/mutation/report.md
mutation: $(VENV)/.dev
	$(PIP_INSTALL) -e ".[mutation]"
	$(VENV)/bin/python tools/mutation.py $(if $(AGAIN),--again) $(ROOMS)

clean:
	rm -rf $(VENV) $(EQUIADAPT_VENV) outputs .pytest_cache .ruff_cache .hypothesis mutants
