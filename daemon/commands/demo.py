"""`blipd demo`: run the daemon on a config as a child process and print its events readably.

The events go out over ZeroMQ as usual; this command is just a daemon plus a subscriber, so a
newcomer sees exactly what a subscribing program would receive.
"""
import os
import signal
import subprocess
import sys
import threading
from typing import Optional

from daemon.config.config import load_config
from daemon.commands.sub import run_subscriber

STOP_TIMEOUT_S = 15.0


def run_demo(config_path: str, seconds: Optional[float] = None, log_level: Optional[str] = None) -> int:
    """Start `blipd run`, subscribe to everything it publishes, stop both on Ctrl-C or after `seconds`.

    log_level: `--log-level`, handed to the daemon (whose log lines go to stderr)."""
    settings = load_config(config_path)
    endpoint = settings.publish.bind.replace("*", "127.0.0.1").replace("0.0.0.0", "127.0.0.1")
    command = [sys.executable, "-m", "daemon.commands.cli"] + (["--log-level", log_level] if log_level else [])
    child = subprocess.Popen(command + ["run", "-c", config_path], env=dict(os.environ))
    stop = threading.Event()
    if seconds is not None:
        timer = threading.Timer(seconds, stop.set)
        timer.daemon = True
        timer.start()
    watcher = threading.Thread(target=lambda: (child.wait(), stop.set()), name="demo-child", daemon=True)
    watcher.start()
    try:
        run_subscriber(endpoint, topics=[""], pretty=True, out=sys.stdout, stop_event=stop)
    except KeyboardInterrupt:
        pass
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    return 0 if child.returncode in (0, -signal.SIGTERM) else int(child.returncode or 1)
