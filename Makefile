# fmscope: the two commands are `make demo` and `make test`; both create .venv and install pinned.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS := dev,slicer,napari,spatial,batch
# Debian packages for Qt/napari under a virtual display (tests and screenshots).
SYSTEM_PACKAGES := xvfb xauth libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 \
	libxcb-render-util0 libxcb-xinerama0 libxcb-randr0 libxcb-shape0 libgl1 libegl1 libgl1-mesa-dri libfontconfig1 libdbus-1-3

.PHONY: demo test lint bench screenshots install system-deps clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	PIP_CONSTRAINT=$(CURDIR)/constraints.txt $(BIN)/python -m pip install --quiet --no-compile --disable-pip-version-check \
		-c constraints.txt -e ".[$(EXTRAS)]"
	# sam2 (MedSAM2 tracking) builds against the installed torch: no build isolation, no CUDA extension.
	SAM2_BUILD_CUDA=0 PIP_CONSTRAINT=$(CURDIR)/constraints.txt $(BIN)/python -m pip install --quiet --no-compile \
		--disable-pip-version-check -c constraints.txt setuptools
	SAM2_BUILD_CUDA=0 PIP_CONSTRAINT=$(CURDIR)/constraints.txt $(BIN)/python -m pip install --quiet --no-compile \
		--disable-pip-version-check --no-build-isolation -c constraints.txt sam2==1.1.0
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fmscope demo -o demo_output

# Installs the missing display libraries with apt (needs root or sudo, as in CI).
system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
			--no-install-recommends $$missing; fi

# Two pytest workers share the 2 cores (one test file per worker, so module fixtures load once); the few tests
# marked `serial` compare timings a neighbouring worker would skew, so they run alone afterwards, collected from
# the files that mark them (collecting every test module again cost ~80 s of imports).
SERIAL_FILES = $(shell grep -rl --include='*.py' 'mark\.serial' tests)
test: $(STAMP) system-deps lint
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not serial"
	$(BIN)/python -m pytest -m serial $(SERIAL_FILES)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP) system-deps
	$(BIN)/python benchmarks/segment.py
	$(BIN)/python benchmarks/speed.py
	xvfb-run -a $(BIN)/python benchmarks/napari_latency.py
	$(BIN)/python benchmarks/omics.py
	$(BIN)/python benchmarks/image_expression.py
	$(BIN)/python benchmarks/finetune.py
	$(BIN)/python benchmarks/tracking.py
	xvfb-run -a -s "-screen 0 1600x1000x24" $(BIN)/python benchmarks/napari_spatial.py

screenshots: $(STAMP) system-deps
	xvfb-run -a -s "-screen 0 1600x1000x24" $(BIN)/python scripts/screenshots.py

clean:
	rm -rf $(VENV) demo_output
