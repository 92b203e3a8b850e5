"""`blipd check -c FILE`: validate the config and load everything it needs, without starting streams.

Exit 0 when the daemon would start, 2 with one line per problem otherwise.
"""
from typing import List, TextIO

from daemon.config.config import load_config
from daemon.service import load_package


def run_check(config_path: str, out: TextIO) -> int:
    """Config, model package, the tasks the streams ask for, and the SOPHON preflight when needed."""
    settings = load_config(config_path)  # ConfigError -> exit 2 in the CLI
    package = load_package(settings)
    problems: List[str] = []
    backends = {spec.backend for spec in package.tasks.values()}
    needs_sail = settings.model.backend == "sail" or "sail" in backends or any(
        s.decoder == "sail" for s in settings.streams
    )
    try:
        from daemon.ops.preflight import run_preflight
    except ImportError:
        run_preflight = None  # type: ignore[assignment]
    if run_preflight is not None:
        sail_tasks = [spec for spec in package.tasks.values() if spec.backend == "sail"]
        bmodels = sorted({str(g.path) for spec in sail_tasks for g in spec.graphs.values()})
        chip = package.source.get("chip")
        findings = run_preflight(
            backend_needed=needs_sail,
            bmodels=bmodels,
            device=settings.model.device,
            decoder_needed=any(s.decoder == "sail" for s in settings.streams),
            chips={path: chip for path in bmodels} if chip else None,
            workers=settings.model.workers if settings.model.backend == "sail" or "sail" in backends else 1,
        )
        for finding in findings:
            line = str(finding)
            if getattr(finding, "ok", True):
                out.write("ok: %s\n" % line)
            else:
                problems.append(line)
    for line in problems:
        out.write("problem: %s\n" % line)
    if problems:
        return 2
    out.write(
        "ok: %s: %d stream(s), model %s (%s)\n"
        % (config_path, len(settings.streams), package.name, ", ".join(sorted(package.tasks)))
    )
    return 0
