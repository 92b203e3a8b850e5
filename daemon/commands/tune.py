"""`blipd tune --timeline SCAN.json --labels LABELS.json [--out prompts.yaml] [--png OUT.png]`:
prompt settings (enter, exit, dwell_s, smoothing, cooldown_s) chosen from labelled examples by
replaying a scan's scores through the tracker (daemon/tuning/tune.py); no model runs. Exit 0, or 2
with one line (a bad timeline or label file)."""
import argparse
import sys

HELP = "choose prompt thresholds from a scan's timeline and labelled intervals; print them and a YAML snippet"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeline", required=True, metavar="SCAN.json", help="written by `blipd scan --json`")
    parser.add_argument("--labels", required=True, action="append", metavar="LABELS.json",
                        help='{"prompts": {ID: [[start_s, end_s], ...]}} or a demo clip timeline; '
                             "one per scanned file, in the scan's order")
    parser.add_argument("--out", default=None, metavar="prompts.yaml",
                        help="write the YAML snippet here (default: print it)")
    parser.add_argument("--png", default=None, metavar="OUT.png", help="plot the score traces (needs the plot extra)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from daemon.tuning import report, timeline
    from daemon.tuning.errors import InputError
    from daemon.tuning.labels import load_labels
    from daemon.tuning.tune import tune

    try:
        doc = timeline.load(args.timeline)
        files = doc["files"]
        if len(args.labels) != len(files):
            raise InputError("%s holds %d file(s); give --labels once per file, in order (got %d)"
                             % (args.timeline, len(files), len(args.labels)))
        known = [p["id"] for p in doc["prompts"]]
        labels = [load_labels(path, known) for path in args.labels]
        results = tune(doc, labels)
        if not results:
            raise InputError("%s: no prompt of the scan (%s) is labelled" % (", ".join(args.labels), ", ".join(known)))
        sys.stdout.write(report.table(results))
        tuned = {r.prompt["id"] for r in results}
        snippet = report.yaml_snippet(results, [p for p in doc["prompts"] if p["id"] not in tuned],
                                      Path(args.timeline).name)
        if args.out:
            Path(args.out).write_text(snippet, encoding="utf-8")
            sys.stdout.write("wrote %s\n" % args.out)
        else:
            sys.stdout.write("\n" + snippet)
        if args.png:
            from daemon.tuning.plot import write_png

            write_png(args.png, doc, labels, results)
            sys.stdout.write("wrote %s\n" % args.png)
    except InputError as exc:
        sys.stderr.write("blipd: %s\n" % str(exc).splitlines()[0])
        return 2
    except OSError as exc:  # --out or --png cannot be written
        sys.stderr.write("blipd: cannot write %s: %s\n" % (exc.filename, (exc.strerror or type(exc).__name__).lower()))
        return 1
    return 0
