# The README's two commands: `make demo` and `make test`. Everything else here serves them.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# Debian packages the tests need: a real RTSP server (gst-rtsp-server through Debian's python3-gi),
# ffmpeg to make clips, systemd-analyze to check the unit files, a real MQTT broker for the bridge,
# headless Chromium for the console's page.
APT_PKGS := ffmpeg python3 python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp \
	gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly \
	gstreamer1.0-plugins-bad gstreamer1.0-libav systemd mosquitto mosquitto-clients chromium \
	openssl
# Everything the daemon imports at run time must run on the Python 3.8 of SOPHON SDK images.
RUNTIME_CODE := daemon blip
RUNTIME_EXCLUDE := 'blip/(export|demo)/'

.PHONY: demo test venv venv-test sysdeps vermin schema clean

$(VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[onnx,cv,console]'
	touch $@

$(VENV)/.test: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test]'
	touch $@ $(VENV)/.runtime

venv: $(VENV)/.runtime
venv-test: $(VENV)/.test

sysdeps:
	@missing=$$(for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# The console records the demo's events and serves the page (its address is printed first);
# Ctrl-C stops the daemon, then the trap stops the console.
demo: venv
	@$(VENV)/bin/blipd --log-level warning console --sub tcp://127.0.0.1:5556 \
		--data "$${XDG_STATE_HOME:-$$HOME/.local/state}/blipd-console-demo" & console=$$!; \
	trap 'kill $$console 2>/dev/null; wait $$console 2>/dev/null' EXIT INT TERM; \
	$(VENV)/bin/blipd demo -c config/demo.yaml

vermin: venv-test
	$(VENV)/bin/vermin --target=3.8- --no-tips --violations --eval-annotations --exclude-regex $(RUNTIME_EXCLUDE) $(RUNTIME_CODE)

schema: venv
	$(PY) -m daemon.publish.events > config/events.schema.json

# Two workers, one test file each at a time (a module's shared daemon stays in one process): most
# of the suite waits on subprocesses, sockets and clocks, so two run side by side on 2 cores.
TEST_WORKERS ?= 2
test: sysdeps venv-test vermin
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile

clean:
	rm -rf $(VENV) build *.egg-info

# The demo package's int8 sibling (docs/model-package.md): calibration frames from the demo clip,
# then `blipd quantize`, each graph measured; 20-30 s on 2 cores. Not committed: beside models/demo
# it takes 24-26 MB depending on which graphs the measurement keeps float, over the 25 MB budget.
.PHONY: demo-int8
demo-int8: venv
	$(PIP) install -q -e '.[onnx,cv,console,quantize]'
	rm -rf build/demo-calib models/demo-int8
	$(PY) -m blip.export.calibration --package models/demo --video samples/demo.mp4 --count 64 --out build/demo-calib
	$(VENV)/bin/blipd quantize models/demo --out models/demo-int8 --calibration build/demo-calib
