"""Command-line plumbing shared by the entry points, and the `tfstyle` console script.

`tfstyle transfer ARGS` is the same as `python -m tfstyle.transfer ARGS`. Every entry point follows one contract:
bad input (an InputError or a flag that does not parse) prints one line, `error: ...`, and exits with status 2.
"""

import importlib
import logging
import os
import sys
from typing import Callable, Sequence

from absl import app, flags
from absl import logging as absl_logging

from tfstyle.errors import InputError

USAGE_ERROR_STATUS = 2

# Subcommand -> what it does; each is the module tfstyle.COMMAND with a `run(argv)` function.
COMMANDS = {
    "transfer": "put the style of one recording onto the content of another",
    "train": "train a zoo model on a folder of audio",
    "export": "export a trained or untrained model as a SavedModel for TF Serving",
    "evaluate": "measure a model on a folder of audio (JSON report)",
    "embed": "embed many audio files with a SavedModel (Apache Beam pipeline; TFRecord and Parquet)",
}
HELP_FLAGS = ("-h", "--help", "-?", "--helpshort", "--helpfull")


def fail(message: str) -> None:
    """Prints a one-line error and exits with the usage-error status."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(USAGE_ERROR_STATUS)


def check_sample_rate(rate: int | None) -> None:
    """A --sample_rate flag's value: unset, or a rate audio can be worked at (InputError otherwise)."""
    if rate is not None and rate < 1000:
        raise InputError(f"--sample_rate must be at least 1000 Hz, got {rate}")


def beam_pipelines():
    """The module tfstyle.pipelines, or an InputError that says how to install Apache Beam, its optional extra."""
    # Beam's import warns on the root logger that Google Cloud's BigQuery clients are missing: they are not
    # needed here, and the line would read as a problem with the run.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        importlib.import_module("apache_beam")
        from tfstyle import pipelines
    except ImportError as e:
        if not (e.name or "").startswith("apache_beam"):
            raise
        raise InputError('this needs Apache Beam, an optional extra: pip install "tfstyle[beam]" '
                         '(from a checkout: pip install ".[beam]")') from None
    finally:
        root.setLevel(level)
    return pipelines


def _parse_flags(argv: Sequence[str], known_only: bool = False) -> list[str]:
    try:
        return flags.FLAGS(argv, known_only=known_only)
    except flags.Error as e:
        fail(str(e))


def _exit_after_help(print_help: Callable[[], None], status: int = 0) -> None:
    """Prints help and exits; a reader that stops early (`| head`) is no error."""
    try:
        print_help()
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own flush at exit would fail too
    sys.exit(status)


def _print_help(program: str, module_name: str) -> None:
    """Usage, the command's description (its module docstring) and its flags, on stdout."""
    print(f"usage: {program} [--flag=value ...]\n")
    print((sys.modules[module_name].__doc__ or "").strip() + "\n")
    # absl files the flags of a module run as __main__ under the script's path, and heads them with it.
    listing = flags.FLAGS.module_help(sys.argv[0] if module_name == "__main__" else module_name)
    print("flags:\n" + listing.strip().partition("\n")[2])


def run(main: Callable[[list[str]], None], argv: Sequence[str] | None = None, *,
        other_flags_to_main: bool = False) -> None:
    """absl's app.run with tfstyle's error contract around `main`; --help prints the command's help, exit 0.

    With `other_flags_to_main`, flags the command does not define reach `main` in its argv (after the program
    name) instead of being an error: the Beam commands hand them to Beam as pipeline options.
    """
    argv = list(sys.argv if argv is None else argv)
    if any(arg in HELP_FLAGS for arg in argv[1:]):
        program = argv[0] if argv[0].startswith("tfstyle ") else f"python -m {main.__module__}"
        if main.__module__ == "__main__":
            program = f"python -m {sys.modules['__main__'].__spec__.name}"
        _exit_after_help(lambda: _print_help(program, main.__module__))

    def guarded_main(argv: list[str]) -> None:
        unexpected = [arg for arg in argv[1:] if not (other_flags_to_main and arg.startswith("--"))]
        if unexpected:
            fail(f"unexpected arguments: {' '.join(unexpected)} (flags are written --name=value)")
        try:
            main(argv)
        except InputError as e:
            fail(str(e))
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    # TensorFlow's INFO lines (device placement, strategy set-up) would bury ours; warnings still show.
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    absl_logging.set_verbosity(absl_logging.WARNING)  # e.g. checkpoint "sharding callback" INFO lines
    app.run(guarded_main, argv=argv,
            flags_parser=lambda args: _parse_flags(args, known_only=other_flags_to_main))


def main() -> None:
    """The `tfstyle` console script: dispatches `tfstyle COMMAND ...` to the command's module."""
    if len(sys.argv) < 2 or sys.argv[1] in HELP_FLAGS:
        asked = len(sys.argv) >= 2  # asked for help: stdout, exit 0; no command at all is a usage error
        stream = sys.stdout if asked else sys.stderr

        def print_usage() -> None:
            print("usage: tfstyle COMMAND [--flag=value ...]\n\ncommands:", file=stream)
            for name, description in COMMANDS.items():
                print(f"  {name:<10} {description}", file=stream)
            print("\ntfstyle COMMAND --help lists a command's flags; tfstyle COMMAND is python -m tfstyle.COMMAND.",
                  file=stream)

        _exit_after_help(print_usage, 0 if asked else USAGE_ERROR_STATUS)
    if sys.argv[1] not in COMMANDS:
        fail(f"unknown command {sys.argv[1]!r}; usage: tfstyle {{{','.join(COMMANDS)}}} [--flags]; "
             "see tfstyle --help")
    command = sys.argv[1]
    module = importlib.import_module(f"tfstyle.{command}")
    module.run([f"tfstyle {command}", *sys.argv[2:]])
