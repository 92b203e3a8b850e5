"""The scan's progress display: a bar redrawn in place on a terminal, plain lines in a log."""
import io

from daemon.commands.scan import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_one_redrawn_bar() -> None:
    out = _Terminal()
    progress = Progress(out)
    progress.begin("clip.mp4")
    for done in (0.0, 25.0, 50.0, 100.0):
        progress("clip.mp4", done, 100.0)
    progress.finish()
    text = out.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1
    assert "[" + "#" * 30 + "] 100%" in text and "clip.mp4" in text


def test_a_log_gets_a_first_line_then_one_every_tenth() -> None:
    out = io.StringIO()
    progress = Progress(out)
    progress.begin("clip.mp4")
    for tenth in range(0, 101, 2):
        progress("clip.mp4", float(tenth), 100.0)
    progress.finish()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert [line.split()[2] for line in lines] == ["2%"] + ["%d%%" % p for p in range(10, 101, 10)]
    assert lines[-1].startswith("scan: clip.mp4 100% 100.0/100.0 s")
