"""What `blipd tune` prints and writes: a table per prompt, and a YAML snippet for `prompts:`."""
import json
from typing import Any, Dict, List, Optional, Sequence

from daemon.tuning.tune import PromptResult, Setting, setting_dict

COLUMNS = ("prompt", "enter", "exit", "dwell_s", "smoothing", "cooldown_s", "P", "R", "F1", "delay_s",
           "AUC", "TPR", "FPR", "F1 before")


def _num(value: Optional[float], digits: int = 2) -> str:
    return "-" if value is None else "%.*f" % (digits, value)


def _setting_cells(setting: Setting) -> List[str]:
    return ["%g" % setting.enter, "%g" % setting.exit, "%g" % setting.dwell_s, "%g" % setting.smoothing,
            "%g" % setting.cooldown_s]


def table(results: Sequence[PromptResult]) -> str:
    """Fixed-width text: chosen settings, event-level precision/recall/F1, mean start delay,
    frame-level AUC of the raw score and the chosen setting's operating point, and the F1 of the
    settings the scan ran with."""
    rows = [list(COLUMNS)]
    for r in results:
        ev = r.chosen.events
        rows.append([r.prompt["id"]] + _setting_cells(r.chosen.setting) + [
            _num(ev.precision), _num(ev.recall), _num(ev.f1), _num(ev.mean_delay_s, 1), _num(r.auc, 3),
            _num(r.tpr), _num(r.fpr), _num(r.before.events.f1)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    for r in results:
        ev = r.chosen.events
        lines.append("%s: %d labelled, %d hit, %d missed, %d false start(s)"
                     % (r.prompt["id"], ev.hits + ev.missed, ev.hits, ev.missed, ev.false_starts))
    return "\n".join(lines) + "\n"


def yaml_snippet(results: Sequence[PromptResult], untouched: Sequence[Dict[str, Any]], source: str) -> str:
    """Flow-style entries ready to paste under the stream's `prompts:` (texts JSON-quoted, which
    YAML reads as is); prompts without labels keep the settings they had, marked so."""
    lines = ["# blipd tune on %s: paste under the stream's `prompts:`" % source]
    for r in results:
        entry = dict(id=r.prompt["id"], text=r.prompt["text"], **setting_dict(r.chosen.setting))
        ev = r.chosen.events
        lines.append("- %s  # F1 %.2f (P %.2f, R %.2f), before %.2f"
                     % (_flow(entry), ev.f1, ev.precision, ev.recall, r.before.events.f1))
    for prompt in untouched:
        entry = {k: prompt[k] for k in ("id", "text", "enter", "exit", "dwell_s", "smoothing", "cooldown_s")}
        lines.append("- %s  # not labelled: unchanged" % _flow(entry))
    return "\n".join(lines) + "\n"


def _flow(entry: Dict[str, Any]) -> str:
    return "{%s}" % ", ".join("%s: %s" % (k, json.dumps(v, ensure_ascii=False)) for k, v in entry.items())
