"""The ``freeagentics-rs`` command (also ``python -m freeagentics_rs``): ``demo``, ``bench`` and
``profile``. Every figure it prints is measured in that run."""

from __future__ import annotations

import argparse
import sys

from ._machine import pin_blas_environment

__all__ = ["main"]

# Help texts: whole sentences, plain text (argparse prints them as they are written).
DESCRIPTION = (
    "Multi-agent scheduling on freeagentics_rs: run a simulation under each execution strategy, "
    "measure the benchmark table, or profile a threaded workload. Every figure it prints is "
    "measured in that run."
)
EPILOG = "Run 'freeagentics-rs COMMAND --help' for the options of a command. 'python -m freeagentics_rs' is the same."
SUBCOMMAND_EPILOG = "Every figure it prints is measured in that run."


def parser() -> argparse.ArgumentParser:
    from . import _bench, _demo, _profile

    root = argparse.ArgumentParser(prog="freeagentics-rs", description=DESCRIPTION, epilog=EPILOG)
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module, text in (
        ("demo", _demo, "Runs one multi-agent simulation under each execution strategy and ends with a table."),
        ("bench", _bench, "Measures the headline benchmark table on this machine."),
        ("profile", _profile, "Prints a ThreadingProfiler report (GIL, locks, executors, threads) of a workload."),
    ):
        sub = commands.add_parser(name, help=text, description=f"{text} {SUBCOMMAND_EPILOG}")
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return root


def main(argv: list[str] | None = None) -> int:
    pin_blas_environment()  # for worker processes and anything imported from here on
    # numpy imports numpy.random on first use; a Ctrl-C that lands during that import is
    # swallowed by its extension modules' initialization (the command then runs on, or the
    # process dies by the signal at exit), so it is imported before any command starts.
    import numpy.random  # noqa: F401

    args = parser().parse_args(argv)
    try:
        code: int = args.run(args)
        return code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
