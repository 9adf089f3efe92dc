"""Command-line plumbing shared by the entry points, and the `tfstyle` console script.

`tfstyle transfer ARGS` is the same as `python -m tfstyle.transfer ARGS`. Every entry point follows one contract:
bad input (an InputError or a flag that does not parse) prints one line, `error: ...`, and exits with status 2.
"""

import importlib
import logging
import sys
import time
from typing import Callable, Sequence

from absl import app, flags
from absl import logging as absl_logging

from tfstyle.errors import InputError

USAGE_ERROR_STATUS = 2

# Subcommand -> module with a `run(argv)` function.
COMMANDS = {name: f"tfstyle.{name}" for name in ("evaluate", "export", "train", "transfer")}


def fail(message: str) -> None:
    """Prints a one-line error and exits with the usage-error status."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(USAGE_ERROR_STATUS)


def check_sample_rate(rate: int | None) -> None:
    """A --sample_rate flag's value: unset, or a rate audio can be worked at (InputError otherwise)."""
    if rate is not None and rate < 1000:
        raise InputError(f"--sample_rate must be at least 1000 Hz, got {rate}")


def _parse_flags(argv: Sequence[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(str(e))


class Progress:
    """Progress of a long loop on stderr: one line rewritten in place on a terminal, about 20 lines in a log."""

    def __init__(self, total: int, *, start: int = 0, stream=None):
        self.total = total
        self.first = start
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.every = 1 if self.interactive else max(1, (total - start) // 20)
        self.started = time.perf_counter()

    def __call__(self, done: int, text: str) -> None:
        """Reports `done` of `total` steps with a short status text."""
        if (done - self.first) % self.every and done != self.total:
            return
        elapsed = time.perf_counter() - self.started
        remaining = elapsed / max(done - self.first, 1) * (self.total - done)
        line = f"step {done}/{self.total}  {text}  {elapsed:.1f} s, ~{remaining:.0f} s left"
        if self.interactive:
            self.stream.write("\r" + line + ("\n" if done == self.total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def run(main: Callable[[list[str]], None], argv: Sequence[str] | None = None) -> None:
    """absl's app.run with tfstyle's error contract around `main`."""

    def guarded_main(argv: list[str]) -> None:
        if len(argv) > 1:
            fail(f"unexpected arguments: {' '.join(argv[1:])} (flags are written --name=value)")
        try:
            main(argv)
        except InputError as e:
            fail(str(e))
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    if main.__module__ != "__main__":  # the console script: absl's --help lists the script's key flags only
        for flag in flags.FLAGS.get_flags_for_module(main.__module__):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    # TensorFlow's INFO lines (device placement, strategy set-up) would bury ours; warnings still show.
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    absl_logging.set_verbosity(absl_logging.WARNING)  # e.g. checkpoint "sharding callback" INFO lines
    app.run(guarded_main, argv=list(argv) if argv is not None else None, flags_parser=_parse_flags)


def main() -> None:
    """The `tfstyle` console script: dispatches `tfstyle COMMAND ...` to the command's module."""
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        asked_for_help = len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help")
        given = "" if asked_for_help else f"unknown command {sys.argv[1]!r}; "
        fail(f"{given}usage: tfstyle {{{','.join(COMMANDS)}}} [--flags]; see tfstyle COMMAND --help")
    command = sys.argv[1]
    module = importlib.import_module(COMMANDS[command])
    module.run([f"tfstyle {command}", *sys.argv[2:]])
