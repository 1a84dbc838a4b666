"""Every option of every `kubesoar` subcommand has help text.

Walks the argparse parsers the subcommands really build: each subcommand's
entry point is called through `kubesoar._cli.main` with parsing intercepted,
so a parser built anywhere on the way (and any subparser) is checked.
"""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from kubesoar import _cli


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def _parser_of(command: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    def capture(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        raise _Captured(self)

    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_known_args", capture)
        try:
            _cli.main([command])
        except _Captured as captured:
            return captured.parser
    raise AssertionError(f"kubesoar {command} parsed no arguments")


def _options(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.Action]]:
    found: list[tuple[str, argparse.Action]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += [(f"{name} {n}", a) for n, a in _options(sub)]
            continue
        if isinstance(action, argparse._HelpAction):
            continue
        found.append(("/".join(action.option_strings) or action.dest, action))
    return found


@pytest.mark.parametrize("command", sorted(_cli.SUBCOMMANDS))
def test_every_option_has_help(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    parser = _parser_of(command, monkeypatch)
    assert parser.description, f"kubesoar {command} has no description"
    missing = [
        name
        for name, action in _options(parser)
        if not action.help or action.help == argparse.SUPPRESS or len(action.help) < 8
    ]
    assert missing == [], f"kubesoar {command}: options without help: {missing}"
    text = parser.format_help()  # every help string formats (no stray % signs)
    assert all(o in text for _, a in _options(parser) for o in a.option_strings)
