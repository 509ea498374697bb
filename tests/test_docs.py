"""The docs cannot drift from the code: every ``videoattn`` command shown in README.md and docs/*.md uses
flags the command's parser has, and every config key they mention (``train.lr``, ``data.root``, ...)
exists in the config schema.

Commands are read from ```bash / ```sh / ```console blocks (in console blocks only the ``$ `` lines; the
rest is output), from the lines of untagged ``` blocks that start with ``videoattn`` (usage lines) and
from inline code spans in prose that start with ``videoattn``. Keys are read from
inline code spans and from ``--set`` values. A failure names the file, the line, the command and the
flag or key.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import shlex
import typing
from pathlib import Path

import pytest

from videoattn.cli import build_parser
from videoattn.config import Config

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SECTIONS = ("model", "data", "train", "eval")
FENCE = re.compile(r"^\s*```\s*([\w-]*)")
COMMAND_LANGUAGES = {"bash", "sh", "shell", "console"}
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
# ``videoattn train: error: ...``: a message the docs quote, not a command.
MESSAGE = re.compile(r"^\s*videoattn(\s+[\w-]+)*:(\s|$)")
# ``train.lr``, ``model.options.block_options``: a section, a dot, a lower-case name; not part of a longer
# dotted name (``config.train.lr``, ``videoattn.data.check``) or a path (``docs/data.md``).
CONFIG_KEY = re.compile(r"(?<![\w./-])((?:model|data|train|eval)(?:\.[a-z_][a-z0-9_]*)+)(?![\w(/-])")
# What looks like a key but is a file name or a method (``train.json``, ``data.md``, ``model.eval()``).
NOT_KEYS = {"md", "json", "jsonl", "csv", "txt", "py", "yaml", "yml", "pt", "pth", "log", "lock", "png", "prev",
            "tar", "gz", "zip", "mp4", "webm", "html"}


def _documents():
    for path in DOCS:
        if path.is_file():
            yield path, path.read_text(encoding="utf-8").splitlines()


def _blocks_and_prose(lines):
    """``(line_number, text, where)``: ``where`` is the fence language for lines inside a fenced block
    and None for prose."""
    language = None
    inside = False
    for number, line in enumerate(lines, start=1):
        fence = FENCE.match(line)
        if fence:
            inside = not inside
            language = fence.group(1).lower() if inside else None
            continue
        yield number, line, (language or "text") if inside else None


def _command_lines(lines):
    """``(line_number, command text)`` of every shell command shown, continuation lines joined."""
    pending, start = "", 0
    for number, line, where in _blocks_and_prose(lines):
        if where is None:
            for _, code in INLINE_CODE.findall(line):
                code = code.replace("\\|", "|").strip()
                if code.startswith("videoattn ") and not MESSAGE.match(code):
                    yield number, code
            continue
        text = line.rstrip()
        if where == "text" and not pending and (not text.lstrip().startswith("videoattn ") or MESSAGE.match(text)):
            continue  # an untagged block (usage lines, messages): only the commands that start with videoattn
        if where not in COMMAND_LANGUAGES | {"text"}:
            continue
        if where == "console":
            if pending:
                text = text.strip()
            elif text.lstrip().startswith("$ "):
                text = text.lstrip()[2:]
            else:
                continue  # output
        if not pending:
            start = number
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        yield start, pending + text
        pending = ""


def _split(command: str) -> list[str]:
    command = command.split(" #", 1)[0]  # a trailing shell comment
    try:
        return shlex.split(command)
    except ValueError:  # an unbalanced quote in an example: fall back to white space
        return command.split()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def _invocations(tokens: list[str]):
    """The token lists after each ``videoattn`` / ``-m videoattn`` of a command line (pipes and ``&&``
    start new commands)."""
    for index, token in enumerate(tokens):
        if token == "videoattn" or token.endswith("/videoattn"):
            rest = []
            for item in tokens[index + 1:]:
                if item in ("|", "||", "&&", ";", ">", ">>", "2>&1"):
                    break
                rest.append(item)
            yield rest


def _is_placeholder(token: str) -> bool:
    bare = token.strip("[]<>(){}.,")
    return not bare or bare.isupper() or token.startswith(("<", "{", "$", "[")) or "..." in token


def check_command(tokens: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """Problems of one ``videoattn`` invocation (tokens after ``videoattn``): unknown sub-commands and flags."""
    problems = []
    name = "videoattn"
    while True:
        commands = _subparsers(parser)
        if not commands or not tokens or tokens[0].startswith("-"):
            break
        head = tokens[0]
        if "/" in head and all(part in commands for part in head.split("/")):  # ``data convert/check/synth``
            return problems
        if head not in commands:
            if not _is_placeholder(head) and not head.startswith(("[", "|")):
                problems.append(f"`{name} {head}`: no such command (known: {', '.join(sorted(commands))})")
            return problems
        parser, name, tokens = commands[head], f"{name} {head}", tokens[1:]
    known = _options(parser)
    for token in tokens:
        flag = token.lstrip("[(").rstrip("])|,.:;").split("=", 1)[0]
        if not re.fullmatch(r"--?[A-Za-z][\w-]*", flag):
            continue
        if flag not in known:
            problems.append(f"`{name}` has no flag {flag} (it has: {', '.join(sorted(known))})")
    return problems


def _schema_problem(key: str) -> str | None:
    """None when ``key`` is a config key (anything below a mapping such as ``model.options`` is), else why not."""
    node: typing.Any = Config
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if not dataclasses.is_dataclass(node):
            origin = typing.get_origin(node)
            if node is dict or origin is dict or node is typing.Any:
                return None
            return f"{'.'.join(parts[:depth])!r} is a value, not a section"
        fields = {f.name: f for f in dataclasses.fields(node)}
        if part not in fields:
            where = ".".join(parts[:depth]) or "the top level"
            return f"no key {part!r} in {where} (it has: {', '.join(fields)})"
        node = typing.get_type_hints(node)[part]
    return None


def _keys_in(text: str):
    for match in CONFIG_KEY.finditer(text):
        key = match.group(1)
        if key.rsplit(".", 1)[1] in NOT_KEYS:
            continue
        yield key


def _set_keys(tokens: list[str]):
    for index, token in enumerate(tokens):
        values = []
        if token == "--set":
            values = [t for t in tokens[index + 1:] if re.match(r"[\w.]+=", t)]
            stop = next((i for i, t in enumerate(tokens[index + 1:]) if not re.match(r"[\w.]+=", t)), None)
            values = tokens[index + 1:index + 1 + stop] if stop is not None else values
        elif token.startswith("--set="):
            values = [token[len("--set="):]]
        for value in values:
            key = value.split("=", 1)[0]
            if key.split(".", 1)[0] in SECTIONS:
                yield key


def collect_problems() -> list[str]:
    parser = build_parser()
    problems = []
    for path, lines in _documents():
        where = path.relative_to(REPO)
        for number, command in _command_lines(lines):
            tokens = _split(command)
            for invocation in _invocations(tokens):
                for problem in check_command(invocation, parser):
                    problems.append(f"{where}:{number}: {problem}; in: {' '.join(command.split())}")
            for key in _set_keys(tokens):
                why = _schema_problem(key)
                if why:
                    problems.append(f"{where}:{number}: --set {key}: {why}; in: {' '.join(command.split())}")
        for number, line, fenced in _blocks_and_prose(lines):
            if fenced is not None:
                continue
            for _, code in INLINE_CODE.findall(line):
                for key in _keys_in(code):
                    why = _schema_problem(key)
                    if why:
                        problems.append(f"{where}:{number}: config key `{key}`: {why}")
    return problems


def test_docs_commands_and_config_keys_exist():
    problems = collect_problems()
    assert not problems, "the docs name flags or config keys that do not exist:\n" + "\n".join(problems)


# --- the checker itself ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command, expected", [
    ("videoattn train --config c.yaml --set train.lr=0.1 --resume", []),
    ("videoattn train --config c.yaml --resum", ["has no flag --resum"]),
    ("videoattn data convert --format ssv2 --check --duplicates first", []),
    ("videoattn data check --duplicates first", ["`videoattn data check` has no flag --duplicates"]),
    ("videoattn profile MODEL [--convention fvcore|thop] [--json]", []),
    ("videoattn COMMAND --help", []),
    ("videoattn data convert/check/synth", []),
    ("videoattn trian --config c.yaml", ["`videoattn trian`: no such command"]),
    ("videoattn predict VIDEO --config C --devise cpu", ["`videoattn predict` has no flag --devise"]),
])
def test_check_command_finds_unknown_flags(command, expected):
    problems = check_command(_split(command)[1:], build_parser())
    assert len(problems) == len(expected)
    for problem, text in zip(problems, expected):
        assert text in problem


def test_schema_check_and_key_extraction():
    assert _schema_problem("train.lr") is None and _schema_problem("model.options.block_options") is None
    assert "no key 'lrr' in train" in _schema_problem("train.lrr")
    assert "is a value" in _schema_problem("train.lr.x")
    text = "see `docs/data.md`, `train.json`, `model.eval()`, `config.train.lr`, `train.progress: false`"
    assert list(_keys_in(text)) == ["train.progress"]


def test_console_blocks_read_commands_not_output():
    lines = ["```console", "$ videoattn profile r2d50 \\", "    --json", "r2d50  input --not-a-flag", "```",
             "```bash", "videoattn data synth --out x  # --nope in a comment", "```",
             "Run `videoattn demo --quick` first.", "```", "videoattn train: error: --set train.lrr=1: ...", "```"]
    assert list(_command_lines(lines)) == [(2, "videoattn profile r2d50  --json"),
                                            (7, "videoattn data synth --out x  # --nope in a comment"),
                                            (9, "videoattn demo --quick")]


def test_a_bad_flag_in_a_doc_is_reported_with_file_and_line(tmp_path, monkeypatch):
    doc = tmp_path / "docs" / "x.md"
    doc.parent.mkdir()
    doc.write_text("# x\n\n```bash\nvideoattn test --config c.yaml --view 1x1\n```\nand `train.lrr`\n")
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    monkeypatch.setattr(f"{__name__}.DOCS", [doc])
    problems = collect_problems()
    assert len(problems) == 2
    assert problems[0].startswith("docs/x.md:4: `videoattn test` has no flag --view")
    assert problems[1].startswith("docs/x.md:6: config key `train.lrr`: no key 'lrr' in train")


def _action(path: tuple[str, ...], flag: str) -> argparse.Action:
    parser = build_parser()
    for name in path:
        parser = _subparsers(parser)[name]
    return next(a for a in parser._actions if flag in a.option_strings)


@pytest.mark.parametrize("path, flag", [(("data", "synth"), "--seed"), (("data", "synth"), "--format"),
                                        (("visualize",), "--out"), (("data", "convert"), "--duplicates"),
                                        (("data", "convert"), "--check")])
def test_flags_the_issue_named_have_help(path, flag):
    text = _action(path, flag).help
    assert text and len(text) > 20 and text != argparse.SUPPRESS


def test_demo_help_states_no_duration_that_can_drift():
    assert not re.search(r"\d+\s*min", _action(("demo",), "--quick").help)
