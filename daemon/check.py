"""`blipd check -c FILE`: validate the config and load everything it needs, without starting streams.

Exit 0 when the daemon would start, 2 with one line per problem otherwise.
"""
from typing import List, TextIO

from blip.errors import BlipError
from daemon.config import check_tasks, load_config
from daemon.errors import ConfigError


def run_check(config_path: str, out: TextIO) -> int:
    """Config, model package, the tasks the streams ask for, and the SOPHON preflight when needed."""
    from blip.package import ModelPackage

    settings = load_config(config_path)  # ConfigError -> exit 2 in the CLI
    try:
        package = ModelPackage.load(str(settings.model.package))
    except BlipError as exc:
        raise ConfigError("%s: model.package: %s" % (settings.source_path, exc)) from None
    check_tasks(settings, set(package.tasks))
    problems: List[str] = []
    backends = {spec.backend for spec in package.tasks.values()}
    needs_sail = settings.model.backend == "sail" or "sail" in backends or any(
        s.decoder == "sail" for s in settings.streams
    )
    try:
        from daemon.preflight import run_preflight
    except ImportError:
        run_preflight = None  # type: ignore[assignment]
    if run_preflight is not None:
        for finding in run_preflight(backend_needed=needs_sail):
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
