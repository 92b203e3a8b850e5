"""`python -m blip.demo {train,evaluate,clip} ...`: the demo's three commands in one place."""
import importlib
import sys

COMMANDS = ("train", "evaluate", "clip")


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.stderr.write("usage: python -m blip.demo {%s} [--help]\n" % ",".join(COMMANDS))
        return 2
    module = importlib.import_module("blip.demo." + sys.argv[1])
    sys.argv = ["python -m blip.demo." + sys.argv[1]] + sys.argv[2:]
    return module.main()


if __name__ == "__main__":
    sys.exit(main())
