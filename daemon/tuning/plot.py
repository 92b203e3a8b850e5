"""`blipd tune --png`: per prompt, the score trace with the labelled intervals shaded, the chosen
enter/exit lines and the matches the chosen settings publish. matplotlib comes from the `plot`
extra and is imported only here, when a PNG is asked for."""
from typing import Any, Dict, List, Sequence

from daemon.tuning.errors import InputError
from daemon.tuning.labels import Labels
from daemon.tuning.tune import PromptResult, series_of


def write_png(path: str, doc: Dict[str, Any], labels: Sequence[Labels], results: Sequence[PromptResult]) -> None:
    """One row of axes per (prompt, file); InputError when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("--png needs matplotlib: pip install 'blipd[plot]'") from None
    rows: List[Any] = [(r, i) for r in results for i in range(len(doc["files"]))]
    if not rows:
        raise InputError("--png: no labelled prompt to plot")
    fig, axes = plt.subplots(len(rows), 1, figsize=(11, 2.2 * len(rows) + 0.4), sharex=False, squeeze=False)
    for ax, (result, index) in zip(axes[:, 0], rows):
        _axes(ax, result, doc["files"][index], labels[index].get(result.prompt["id"], []), result.chosen.published[index])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _axes(ax: Any, result: PromptResult, file: Dict[str, Any], truth: Sequence[Any], published: Sequence[Any]) -> None:
    pid, setting = result.prompt["id"], result.chosen.setting
    series = series_of(file["samples"], pid)
    for start, end in truth:
        ax.axvspan(start, end, color="tab:green", alpha=0.18, lw=0)
    for start, end in published:
        ax.plot([start, end], [1.04, 1.04], color="tab:red", lw=4, solid_capstyle="butt")
    if series:
        ts, raw = zip(*series)
        ax.plot(ts, raw, color="tab:blue", lw=1, marker=".", ms=3, label="raw score")
        smoothed, s = [], None
        for value in raw:  # the tracker's exponential smoothing, for the eye only
            s = value if s is None else setting.smoothing * value + (1 - setting.smoothing) * s
            smoothed.append(s)
        ax.plot(ts, smoothed, color="black", lw=1, alpha=0.7, label="smoothed")
    ax.axhline(setting.enter, color="tab:red", ls="--", lw=1, label="enter %g" % setting.enter)
    ax.axhline(setting.exit, color="tab:orange", ls=":", lw=1, label="exit %g" % setting.exit)
    ax.set_ylim(-0.03, 1.1)
    ax.set_ylabel("score")
    ax.set_xlabel("media time (s)")
    ev = result.chosen.events
    ax.set_title("%s: %s  (F1 %.2f; dwell %gs, smoothing %g, cooldown %gs; green = labelled, red bars = published)"
                 % (pid, file["file"].rsplit("/", 1)[-1], ev.f1, setting.dwell_s, setting.smoothing, setting.cooldown_s),
                 fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7)
