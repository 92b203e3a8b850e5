"""`blipd` entry point: thin argument parsing; each command lives in the module that does its job.

Exit codes: 0 success, 1 runtime failure, 2 bad input (config, image, package, arguments).
Heavy imports (onnxruntime, cv2, torch for export) happen inside the command that needs them.
"""
import argparse
import importlib
import json
import logging
import sys
from typing import Callable, Optional, Sequence

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
DEFAULT_MODEL = "models/demo"
COMMAND_MODULES = ("doctor", "console", "bridge", "relay", "scan", "tune", "quantize")
"""Commands that live in daemon/commands/<name>.py, each with `HELP` (one line), `configure(parser)`
and `run(args) -> exit code`; their modules import only the standard library at the top so
building the parser stays cheap."""


def _err(message: str, every_line: bool = False) -> None:
    """One line on stderr (every line with `every_line`: a config's problems): the CLI's only
    error format."""
    lines = message.splitlines() or ["error"]
    for line in lines if every_line else lines[:1]:
        sys.stderr.write("blipd: %s\n" % line)


def cmd_run(args: argparse.Namespace) -> int:
    from daemon.ops.signals import Signals

    signals = Signals().install()  # before the heavy imports: SIGHUP while starting must not kill us
    from daemon.service import run_service

    return run_service(args.config, log_level=args.log_level, signals=signals)


def cmd_check(args: argparse.Namespace) -> int:
    from daemon.commands.check import run_check

    return run_check(args.config, out=sys.stdout)


def cmd_sub(args: argparse.Namespace) -> int:
    from daemon.commands.sub import run_subscriber

    return run_subscriber(
        args.endpoint,
        topics=args.topic or [""],
        pretty=args.pretty,
        out=sys.stdout,
        curve_server_key=args.server_key,
        curve_client_keys=args.client_keys,
        max_events=args.count,
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from daemon.commands.demo import run_demo

    return run_demo(args.config, seconds=args.seconds, log_level=args.log_level)


def cmd_keys(args: argparse.Namespace) -> int:
    from daemon.publish.curve import write_keypair

    public, secret = write_keypair(args.out, args.name)
    sys.stdout.write("public key: %s\nsecret key: %s (mode 0600)\n" % (public, secret))
    return EXIT_OK


def _engine(model: str, tasks: Sequence[str], backend: str, device: int):  # type: ignore[no-untyped-def]
    from blip.engine import Engine
    from blip.package import ModelPackage
    from blip.runtime import create_runtime, resolve_backend

    package = ModelPackage.load(model)
    runtime = create_runtime(resolve_backend(backend), device=device)
    return Engine(package, runtime, tasks=tuple(tasks))


def _oneshot(args: argparse.Namespace, task: str, run: Callable[..., object]) -> int:
    """Shared shape of caption/match/ask: load once, run per image, one result line per image."""
    from blip.image import load_image

    engine = _engine(args.model, (task,), args.backend, args.device)
    status = EXIT_OK
    for path in args.images:
        try:
            image = load_image(path)
        except Exception as exc:  # blip.errors.ImageError: one line, go on with the other images
            _err(str(exc))
            status = EXIT_USAGE
            continue
        result = run(engine, image)
        if args.json:
            sys.stdout.write(json.dumps({"image": path, task: result}, ensure_ascii=False) + "\n")
        elif isinstance(result, dict):
            for key, value in result.items():
                sys.stdout.write("%s\t%s\t%s\n" % (path, key, value))
        else:
            sys.stdout.write("%s\t%s\n" % (path, result))
    return status


def cmd_caption(args: argparse.Namespace) -> int:
    return _oneshot(args, "caption", lambda engine, image: engine.captioner.caption(image))


def cmd_match(args: argparse.Namespace) -> int:
    prompts = dict(zip(args.prompt, args.prompt))
    return _oneshot(
        args, "match", lambda engine, image: {k: round(v, 4) for k, v in engine.matcher.scores(image, prompts).items()}
    )


def cmd_ask(args: argparse.Namespace) -> int:
    questions = dict(zip(args.question, args.question))
    return _oneshot(args, "answer", lambda engine, image: engine.answerer.answer(image, questions))


def cmd_export(args: argparse.Namespace) -> int:
    from blip.export.cli import run

    return run(args)


def cmd_package_seed(args: argparse.Namespace) -> int:
    from blip.package_seed import package_seed

    path = package_seed(args.dir, args.chip, name=args.name)
    sys.stdout.write("wrote %s\n" % path)
    return EXIT_OK


def _add_oneshot(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", name: str, help_text: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text)
    parser.add_argument("images", nargs="+", metavar="IMG")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model package folder (default: %(default)s)")
    parser.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "sail"])
    parser.add_argument("--device", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="one JSON object per image")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blipd", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--log-level", default=None, type=str.lower,
                        choices=["debug", "info", "warning", "error", "critical"],
                        help="override the config's log_level (run, demo), or the default 'warning' of other commands")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("-c", "--config", required=True)
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help="validate a config and load its model package; exit 0 or 2")
    check.add_argument("-c", "--config", required=True)
    check.set_defaults(func=cmd_check)

    subp = sub.add_parser("sub", help="print the events a daemon publishes, one per line")
    subp.add_argument("endpoint", help="e.g. tcp://127.0.0.1:5556")
    subp.add_argument("--topic", action="append", help="topic prefix, e.g. match/ (repeatable)")
    subp.add_argument("--pretty", action="store_true", help="readable lines instead of JSON")
    subp.add_argument("--count", type=int, default=None, help="exit after this many events")
    subp.add_argument("--server-key", default=None, help="CURVE: the daemon's public key file")
    subp.add_argument("--client-keys", default=None, help="CURVE: this client's secret key file")
    subp.set_defaults(func=cmd_sub)

    demo = sub.add_parser("demo", help="run the daemon on a config and print its events readably")
    demo.add_argument("-c", "--config", default="config/demo.yaml")
    demo.add_argument("--seconds", type=float, default=None, help="stop after this long (default: until Ctrl-C)")
    demo.set_defaults(func=cmd_demo)

    keys = sub.add_parser("keys", help="write a CURVE key pair (secret file mode 0600)")
    keys.add_argument("--out", required=True, help="folder to write the keys into")
    keys.add_argument("--name", default="server")
    keys.set_defaults(func=cmd_keys)

    _add_oneshot(sub, "caption", "caption images").set_defaults(func=cmd_caption)
    match = _add_oneshot(sub, "match", "score text prompts against images")
    match.add_argument("--prompt", action="append", required=True)
    match.set_defaults(func=cmd_match)
    ask = _add_oneshot(sub, "ask", "answer questions about images")
    ask.add_argument("--question", action="append", required=True)
    ask.set_defaults(func=cmd_ask)

    export = sub.add_parser("export", help="Hugging Face BLIP checkpoints -> model package (needs the export extra)")
    try:
        from blip.export.cli import configure_parser
    except ImportError as exc:  # torch/transformers not installed: say so only when `export` is used
        export.set_defaults(func=lambda _a, _e=str(exc): (_err("export needs the 'export' extra: %s" % _e), EXIT_USAGE)[1])
        export.add_argument("rest", nargs=argparse.REMAINDER)
    else:
        configure_parser(export)
        export.set_defaults(func=cmd_export)

    seed = sub.add_parser("package-seed", help="write a manifest for a folder of sophon-demo BLIP bmodels")
    seed.add_argument("dir")
    seed.add_argument("--chip", required=True, choices=["bm1684", "bm1684x", "bm1688", "cv186ah"])
    seed.add_argument("--name", default=None)
    seed.set_defaults(func=cmd_package_seed)

    for name in COMMAND_MODULES:
        module_name = "daemon.commands.%s" % name
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(command)
        command.set_defaults(func=module.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command not in ("run", "demo"):
        logging.basicConfig(level=(args.log_level or "warning").upper(), format="%(levelname)s %(name)s: %(message)s")
    from blip.errors import BlipError
    from daemon.errors import DaemonError

    try:
        return int(args.func(args))
    except (BlipError, DaemonError) as exc:
        from daemon.errors import ConfigError

        _err(str(exc), every_line=isinstance(exc, ConfigError))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
