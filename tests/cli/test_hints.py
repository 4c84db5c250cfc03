"""Issue 20 item 3: no message suggests a flag or a command that does not exist.

Every string in ``src/lmroute`` that is not a docstring or an option's own definition is read as
a possible message. In each, ``lmroute <command>`` names a command (it must exist) and owns the
flags that follow it in the same clause; flags after ``pip`` belong to pip; any other flag is a hint
whose commands :data:`HINTS` states, by a fragment of the message. Each flag is then looked up in
``lmroute <command> --help``. A new message with a bare flag fails here until it is added to HINTS.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

from lmroute.cli import build_parser, main

SRC = Path(__file__).resolve().parents[2] / "src" / "lmroute"
#: The commands ``lmroute --help`` lists: the parser is their one list (tests/cli/test_cli_package.py
#: checks it against the command modules).
COMMANDS = tuple(re.findall(r"^    (\w+(?: \w+)?)\n?", build_parser().format_help(), flags=re.MULTILINE))
#: Commands that read public data (the one rule of lmroute.data.public).
DATA_COMMANDS = ("eval", "train", "data", "experiment", "calibrate")

#: A fragment of each message that suggests a flag without naming the command -> the commands
#: that can show it (a library error reaches the person through these).
HINTS: dict[str, tuple[str, ...]] = {
    "Offline? Pass --data-dir DIR": DATA_COMMANDS,
    "relative paths are also looked up in --data-dir": ("train", "data", "experiment"),
    ". Use it with --data-dir ": DATA_COMMANDS,
    "Shares depend on the traffic": ("calibrate",),
    "--set expects KEY=VALUE": ("train",),
    "--alias expects OLD=NEW": ("data",),
    "only set how training prompts are matched": ("data",),
    "judge mode needs a judge model (--judge)": ("label",),
    "name the field with --reference-field": ("label",),
    "wait for it or use another --out": ("label",),
    "rerun with a larger --budget-tokens": ("label",),
    "none (no --upstreams file)": ("label",),
    "is for --mode {}; this run is --mode {}": ("label",),
    "(set --api-key or %s)": ("serve",),
    "(server.max_messages, --max-messages)": ("serve",),
    "(server.max_request_bytes, --max-request-bytes)": ("serve",),
    "--window must be at least 1": ("replay",),
    "--seed must be 0 or more": ("replay",),
    "--seed draws a --schedule's traffic": ("replay",),
    "--router is served as": ("replay",),
    "a spend target needs both models' prices: give --config": ("replay",),
    "--ray-actors must be at least 1": ("score", "label"),
    "--ray-actors goes with --ray (or --ray-address)": ("score", "label"),
    "to score another input, give another --output": ("score",),
    "it holds another router's scores; to score with": ("score",),
    "(it keeps the address it first started with)": ("serve",),
    "needs a single ingress replica": ("serve",),
    "needs a single server process": ("serve",),
    "--ray writes two-model scores only": ("score",),
    "give --strong-pct (two models), or --models": ("calibrate",),
    "--strong-pct is for two models; with --models": ("calibrate",),
    "with --models give either --budget": ("calibrate",),
    "--thresholds tabulates two-model thresholds": ("calibrate",),
    "goes with --models (N priced models)": ("calibrate",),
    "--models routes among at least two models": ("calibrate",),
    "--prompts is empty: give your prompt file": ("calibrate",),
    "give a URL such as http://127.0.0.1:6060": ("chat",),
    "--models needs --prices FILE": ("calibrate", "eval"),
    "with --models give one router (--routers": ("eval",),
    "is for two-model evaluation; with --models": ("eval",),
    "is for N-model evaluation: give --models too": ("eval",),
    "--models evaluates a benchmark file of many models": ("eval",),
    "--prior must be a finite number at least 0": ("onboard",),
    "is the --out folder: give the summary a file": ("shrink",),
    "which the summary would replace: write it elsewhere": ("shrink",),
    "--ray-address local starts a new cluster here": ("serve", "score", "label"),
    "--data-dir": DATA_COMMANDS,
}

#: Whole strings that are parts of messages (an option's name passed to the code that words the
#: message) -> the commands that can show them. Matched whole: as fragments, "--threshold" would
#: claim every message about --thresholds.
PARTS: dict[str, tuple[str, ...]] = {
    "--set {}": ("train",),
    "--plot": ("eval",),
    "--strong-model": ("eval",),
    "--weak-model": ("eval",),
    "--save-scores": ("eval",),
    "--protocol": ("eval",),
    "--threshold": ("eval",),
    "--prices": ("eval",),
    "--policy": ("eval",),
    "--judge": ("label",),
    "--judge-mode": ("label",),
    "--judge-template": ("label",),
    "--judge-max-tokens": ("label",),
    "--grader": ("label",),
    "--reference-field": ("label",),
}

_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
_COMMAND = re.compile(r"\blmroute (data pull|[a-z_]+)")
#: Other programs' command lines in messages (`ray start --head`): their flags are not lmroute's.
_OTHER_TOOL = re.compile(r"\bpip |(?<=`)ray ")
_BOUNDARY = re.compile(r"[`;()]|\.\s+(?=[A-Z])|, or |$")


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of each string constant or f-string (placeholders as ``{}``), without docstrings
    and without the arguments of ``add_argument``/``add_parser`` calls and of the CLI's option helpers
    (``add_*_option(s)``): an option's own definition."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            skip.add(id(body[0].value))
        name = (
            getattr(node.func, "attr", None) or getattr(node.func, "id", "")
            if isinstance(node, ast.Call)
            else ""
        )
        if name in ("add_argument", "add_parser") or (
            name.startswith("add_") and name.endswith(("_option", "_options"))
        ):
            for sub in [*node.args, *(k.value for k in node.keywords)]:
                skip.update(id(n) for n in ast.walk(sub))
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            skip.update(id(v) for v in node.values)
            found.append((node.lineno, text))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))
    return found


def suggestions(text: str) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """((command, flag) pairs of named commands, bare flags, named commands) in one message."""
    owned, bare, commands = [], [], []
    position = 0
    owner: str | None = None
    while position < len(text):
        starts = [m for m in (_COMMAND.search(text, position), _OTHER_TOOL.search(text, position)) if m]
        flag = _FLAG.search(text, position)
        boundary = _BOUNDARY.search(text, position)
        events = [(m.start(), "owner", m) for m in starts]
        events += [(flag.start(), "flag", flag)] if flag else []
        events += [(boundary.start(), "end", boundary)] if boundary and boundary.end() > position else []
        if not events:
            break
        _, kind, match = min(events, key=lambda e: (e[0], e[1] != "owner"))
        if kind == "owner":
            owner = match.group(1) if match.re is _COMMAND else "another program"
            quoted = match.start() > 0 and text[match.start() - 1] == "`"
            if owner != "another program" and owner not in COMMANDS and not quoted:
                owner = None  # prose ("this lmroute does not know"), not a command line
            elif owner != "another program":
                commands.append(owner)
        elif kind == "flag":
            if owner is None:
                bare.append(match.group(0))
            elif owner != "another program":
                owned.append((owner, match.group(0)))
        else:
            owner = None
        position = max(match.end(), position + 1)
    return owned, bare, commands


@cache
def help_flags(command: str) -> frozenset[str]:
    """The options ``lmroute <command> --help`` lists."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main([*command.split(), "--help"])
    return frozenset(_FLAG.findall(out.getvalue()))


@cache
def all_messages() -> list[tuple[str, str]]:
    """(file:line, text) of each string in the package that mentions a flag or ``lmroute <word>``."""
    messages = []
    for path in sorted(SRC.rglob("*.py")):
        for line, text in _strings(ast.parse(path.read_text("utf-8"))):
            if _FLAG.search(text) or _COMMAND.search(text):
                messages.append((f"{path.relative_to(SRC)}:{line}", text))
    return messages


def test_the_parser_reads_suggestions():
    text = "no data. Offline? Pass --data-dir DIR (`lmroute data pull --only {} --to DIR` makes one)"
    assert suggestions(text) == (
        [("data pull", "--only"), ("data pull", "--to")],
        ["--data-dir"],
        ["data pull"],
    )
    pip = "pip install 'lmroute[embed]' && pip install --no-deps x (or --help)"
    assert suggestions(pip) == ([], ["--help"], [])
    assert suggestions("start one with `ray start --head`, or --ray-address local") == (
        [],
        ["--ray-address"],
        [],
    )
    assert suggestions("this lmroute does not know --x; `lmroute nope --y`")[1:] == (["--x"], ["nope"])
    assert suggestions("train one with `lmroute train bert --data S --out DIR`") == (
        [("train", "--data"), ("train", "--out")],
        [],
        ["train"],
    )


def test_every_suggested_flag_exists_on_its_command():
    known = set(COMMANDS)
    problems, unmapped = [], []
    for where, text in all_messages():
        owned, bare, commands = suggestions(text)
        for command in commands:
            if command not in known:
                problems.append(f"{where}: `lmroute {command}` is not a command: {text!r}")
        for command, flag in owned:
            if command in known and flag not in help_flags(command):
                problems.append(f"{where}: lmroute {command} has no {flag}: {text!r}")
        if bare:
            targets = [cmds for fragment, cmds in HINTS.items() if fragment in text]
            targets += [cmds for part, cmds in PARTS.items() if text == part]
            if not targets:
                unmapped.append(f"{where}: {text!r}")
            for command in (c for cmds in targets for c in cmds):
                problems += [
                    f"{where}: lmroute {command} has no {f}" for f in bare if f not in help_flags(command)
                ]
    assert not unmapped, "messages suggesting flags of unknown commands; add them to HINTS:\n" + "\n".join(
        unmapped
    )
    assert not problems, "\n".join(problems)
    used = {fragment for fragment in HINTS if any(fragment in text for _, text in all_messages())}
    used |= {part for part in PARTS if any(part == text for _, text in all_messages())}
    hints = {*HINTS, *PARTS}
    assert used == hints, f"hints that no message has any longer: {hints - used}"
