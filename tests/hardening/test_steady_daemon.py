"""One running daemon (a looping file, a closed port, an unresolvable host) that the tests try to
break: dead cameras retried for ever, every bad config sent by SIGHUP, garbage thrown at the PUB
port, and finally SIGKILL and a restart."""
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from tests.daemon_proc import DaemonProcess, EventCollector, free_tcp_endpoint, seq_gaps
from tests.hardening import probes
from tests.hardening.bad_configs import CASES, SECRET, BadConfig, ConfigContext, case_ids, good_config
from tests.privileges import command_prefix
from tests.rtsp import closed_port

pytestmark = pytest.mark.integration

BACKOFF_MAX_S = 0.2  # defaults.backoff_max_s of bad_configs.GOOD
DEAD = ("never", "nohost")


@dataclass
class Steady:
    daemon: DaemonProcess
    events: EventCollector
    config: Path
    ctx: ConfigContext

    @property
    def pid(self) -> int:
        assert self.daemon.proc is not None
        return self.daemon.proc.pid

    def attempts(self, stream: str) -> int:
        return max([e["attempt"] for e in probes.of(self.events.snapshot(), "stream", stream, state="reconnecting")]
                   or [0])

    def wait_attempts(self, n: int, timeout: float = 120) -> None:
        self.events.wait_for(lambda evs: all(
            any(e["attempt"] >= n for e in probes.of(evs, "stream", s, state="reconnecting")) for s in DEAD),
            timeout=timeout)

    def wait_caption_after(self, index: int, timeout: float = 30) -> None:
        """A new caption of the file stream, received after event number `index`: the streams run."""
        self.events.wait_for(lambda evs: bool(probes.of(evs[index:], "caption", "file")), timeout=timeout)

    def rejections(self) -> List[str]:
        return [line for line in self.daemon.log().splitlines() if "reload rejected" in line]

    def wait_rejections(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.rejections()) < n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)  # polling the log file
        return True


@pytest.fixture(scope="module")
def steady(tiny_package: Path, caption_only_package: Path, clips: Dict[str, Path],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Steady]:
    folder = tmp_path_factory.mktemp("steady")
    endpoint = free_tcp_endpoint()
    ctx = ConfigContext(tiny_package, caption_only_package, clips["moving"], endpoint, closed_port(), folder)
    config = folder / "blipd.yaml"
    config.write_text(good_config(ctx))
    with EventCollector(endpoint) as events, DaemonProcess(config, prefix=command_prefix()) as daemon:
        steady = Steady(daemon, events, config, ctx)
        steady.wait_caption_after(0, timeout=90)
        steady.wait_attempts(1, timeout=30)
        yield steady


def test_dead_cameras_retry_for_ever_with_capped_backoff_and_leak_nothing(steady: Steady) -> None:
    """A closed port and an unresolvable host: retried with jittered, capped, never-zero delays;
    after 50 attempts the process has as many threads and open fds as after 5."""
    steady.wait_attempts(5)
    threads_5 = probes.steady_value(lambda: probes.thread_count(steady.pid))
    fds_5 = probes.steady_value(lambda: probes.fd_count(steady.pid))
    steady.wait_attempts(50)
    threads_50 = probes.steady_value(lambda: probes.thread_count(steady.pid))
    fds_50 = probes.steady_value(lambda: probes.fd_count(steady.pid))
    print("after 5 attempts: %d threads, %d fds; after 50: %d threads, %d fds" % (threads_5, fds_5, threads_50, fds_50))
    assert (threads_50, fds_50) == (threads_5, fds_5)

    events = steady.events.snapshot()
    for name in DEAD:
        retries = probes.of(events, "stream", name, state="reconnecting")
        attempts = [e["attempt"] for e in retries]
        assert attempts == list(range(attempts[0], attempts[0] + len(attempts))), "every attempt is reported"
        delays = [e["retry_in_s"] for e in retries]
        assert all(0 < d <= BACKOFF_MAX_S for d in delays), delays
        # equal jitter: from the 3rd attempt on the ceiling is the cap, the delay at least half of it
        assert all(e["retry_in_s"] >= BACKOFF_MAX_S / 2 for e in retries if e["attempt"] >= 3), delays
        assert not probes.of(events, "stream", name, state="failed"), "a camera is never given up"
        assert name in retries[-1]["reason"]
    assert "no-such-camera.invalid" in probes.of(events, "stream", "nohost", state="reconnecting")[-1]["reason"]
    assert SECRET not in steady.daemon.log()
    assert SECRET not in str(events)
    assert "Traceback" not in steady.daemon.log()


@pytest.mark.parametrize("case", CASES, ids=case_ids())
def test_reload_keeps_the_running_config(case: BadConfig, steady: Steady) -> None:
    """SIGHUP with a broken file: one `reload rejected` line naming file, line and key; the streams
    go on (captions of the file, attempts of the dead cameras)."""
    text = case.text(steady.ctx)
    steady.config.write_text(text)
    before, index, attempts = len(steady.rejections()), len(steady.events.snapshot()), steady.attempts("never")
    steady.daemon.signal(signal.SIGHUP)
    assert steady.wait_rejections(before + 1, timeout=15), steady.daemon.log()[-2000:]
    line = steady.rejections()[before]
    assert "%s:%d: %s: " % (steady.config, case.line(text), case.key) in line, line
    steady.wait_caption_after(index)
    steady.events.wait_for(lambda evs: steady.attempts("never") > attempts, timeout=10)
    assert SECRET not in steady.daemon.log()
    assert "reloaded" not in steady.daemon.log()


def test_after_the_bad_reloads_the_running_config_is_intact(steady: Steady) -> None:
    """The good file again: the reload finds nothing to change, so nothing of the bad ones stuck."""
    steady.config.write_text(good_config(steady.ctx))
    steady.daemon.signal(signal.SIGHUP)
    assert steady.daemon.wait_log("reloaded: 0 added, 0 removed, 0 changed, 3 unchanged", timeout=15), \
        steady.daemon.log()[-2000:]


def test_garbage_on_the_pub_port(steady: Steady) -> None:
    """Random bytes, broken ZMTP, a 10 MB blob, then a peer holding a 10 MB subscription: the
    daemon goes on publishing, without a traceback, and the subscription costs it no memory."""
    rss_before = probes.rss_mb(steady.pid)
    index = len(steady.events.snapshot())
    tried = probes.send_garbage(steady.events.endpoint)
    assert steady.daemon.proc is not None and steady.daemon.proc.poll() is None, "the daemon died of: %s" % tried
    steady.wait_caption_after(index)
    with probes.oversized_subscription(steady.events.endpoint):
        for _ in range(3):  # the PUB takes subscriptions in while it sends: let it send a while
            steady.wait_caption_after(len(steady.events.snapshot()))
        grown = probes.rss_mb(steady.pid) - rss_before
    print("RSS after the garbage: %+.1f MB" % grown)
    assert grown < 100, "the daemon holds %.0f MB more after the garbage" % grown
    steady.wait_caption_after(len(steady.events.snapshot()))
    assert steady.daemon.proc.poll() is None
    assert seq_gaps(steady.events.snapshot()) == {}, "the subscriber beside the garbage lost nothing"
    assert "Traceback" not in steady.daemon.log()


def test_sigkill_then_restart_gives_a_new_boot_and_seq_from_1(steady: Steady) -> None:
    """A subscriber tells the runs apart by `boot`; each run's `seq` starts at 1 per stream.

    The subscriber may miss the new run's first events (it reconnects while the daemon starts:
    ZeroMQ's slow joiner), so "starts at 1" is read from a stats event of the new run: its `seq`
    is the stream's events published or dropped before it, plus the few still queued, plus one."""
    steady.config.write_text(good_config(steady.ctx))
    old = steady.events.snapshot()
    old_boot = old[-1]["boot"]
    steady.daemon.signal(signal.SIGKILL)
    assert steady.daemon.proc is not None
    assert steady.daemon.proc.wait(10) == -signal.SIGKILL
    with DaemonProcess(steady.config) as again:
        fresh = steady.events.wait_for(
            lambda evs: all(probes.of([e for e in evs if e["boot"] != old_boot], kind, "file")
                            for kind in ("caption", "stats")), timeout=90)
        assert again.terminate(timeout=15) == 0
    new: List[Dict[str, Any]] = [e for e in fresh if e["boot"] != old_boot]
    assert len({e["boot"] for e in new}) == 1
    old_max = max(e["seq"] for e in old if e["stream"] == "file")
    stats = probes.of(new, "stats", "file")[0]
    queued_before_it = stats["seq"] - stats["published"] - stats["publish_dropped"] - 1
    assert 0 <= queued_before_it <= 20, stats
    assert min(e["seq"] for e in new if e["stream"] == "file") < old_max, "seq started over, not on"
    assert seq_gaps(steady.events.snapshot()) == {}, "keyed by boot, neither run shows a gap"
    assert "Traceback" not in again.log()
