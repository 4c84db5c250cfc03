"""The ``lmroute`` command line: parses arguments, calls the library, prints results.

One module per command, its parser and its ``run`` side by side: ``eval``, ``score``, ``train``,
``onboard``, ``shrink``, ``experiment``, ``label``, ``data``, ``data pull``, ``serve``, ``calibrate``,
``replay``, ``chat``, ``routers``. ``_options`` defines the options several commands share,
``_output`` how they report. :func:`main` builds the parser from the command modules and turns the
library's errors into one line and an exit code.
Commands import the library inside ``run``, so ``lmroute --help`` loads none of it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from lmroute.cli import (
    calibrate,
    chat,
    data,
    data_pull,
    experiment,
    label,
    onboard,
    replay,
    routers,
    score,
    serve,
    shrink,
    train,
)
from lmroute.cli import eval as eval_command  # not bare `eval`: the builtin
from lmroute.exceptions import LmrouteError

__all__ = ["build_parser", "main"]

#: The commands in the order ``lmroute --help`` lists them.
_COMMANDS = (
    eval_command,
    score,
    train,
    onboard,
    shrink,
    experiment,
    label,
    data,
    data_pull,
    serve,
    calibrate,
    replay,
    chat,
    routers,
)
#: Commands of two words, as the one name their parser has.
_TWO_WORD_COMMANDS = {**data.TWO_WORD_COMMANDS, ("data", "pull"): data_pull.NAME}


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``lmroute`` and all its commands; each command sets ``func`` to its ``run``."""
    from lmroute._version import __version__

    parser = argparse.ArgumentParser(prog="lmroute", description="Train, evaluate and serve LLM routers.")
    parser.add_argument("--version", action="version", version=f"lmroute {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in _COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lmroute`` command: its exit status (1: an lmroute error, 130: Ctrl-C,
    141: the reader of standard output went away, as ``| head`` does; argument errors exit with
    argparse's 2 before any command runs)."""
    args = build_parser().parse_args(_two_word_commands(sys.argv[1:] if argv is None else list(argv)))
    run: Callable[[argparse.Namespace], int] = args.func
    if getattr(args, "quiet", False):
        _quiet_hugging_face()
    try:
        return run(args)
    except LmrouteError as exc:
        print(f"lmroute: error: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        from lmroute._extras import missing_line

        message = missing_line(exc, command=args.command)
        if message is None:
            raise  # not an optional package: a bug to see whole
        print(f"lmroute: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lmroute: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if not _reader_gone(sys.stdout):
            raise  # a connection's, not standard output's: a bug to see whole
        # Point standard output at nothing, or the interpreter's own flush at exit reports the
        # broken pipe again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a command killed by the signal ends


def _quiet_hugging_face() -> None:
    """``--quiet`` for the bars of the Hugging Face libraries as well: transformers draws one each
    time it loads bert's or causal_llm's weights. Both read this switch when they are imported."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    loaded = sys.modules.get("transformers.utils.logging")
    if loaded is not None:  # imported already: lmroute called in-process
        loaded.disable_progress_bar()


def _reader_gone(stream: TextIO) -> bool:
    """Whether ``stream`` is a pipe whose reader has closed it."""
    import select

    try:
        poll = select.poll()
        poll.register(stream.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), no file descriptor
        return True


def _two_word_commands(argv: list[str]) -> list[str]:
    """``argv`` with a two-word command (``data similarity``, ``data pull``) replaced by its parser's
    name (a source spec always has a colon or is ``alpaca-eval``, so neither is ever a source)."""
    for words, name in _TWO_WORD_COMMANDS.items():
        if tuple(argv[: len(words)]) == words:
            return [name, *argv[len(words) :]]
    return argv
