"""The ``freeagentics-rs`` command (also ``python -m freeagentics_rs``): ``demo``, ``bench`` and
``profile``. Every figure it prints is measured in that run."""

from __future__ import annotations

import argparse
import sys

from ._machine import pin_blas_environment

__all__ = ["main"]


def parser() -> argparse.ArgumentParser:
    from . import _bench, _demo, _profile

    root = argparse.ArgumentParser(prog="freeagentics-rs", description=__doc__.splitlines()[0])
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module, text in (
        ("demo", _demo, "one multi-agent simulation under each execution strategy, with a final table"),
        ("bench", _bench, "the seed report's benchmark table, measured on this machine"),
        ("profile", _profile, "a ThreadingProfiler report (GIL, locks, executors, thread count) for a workload"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return root


def main(argv: list[str] | None = None) -> int:
    pin_blas_environment()  # for worker processes and anything imported from here on
    args = parser().parse_args(argv)
    try:
        code: int = args.run(args)
        return code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
