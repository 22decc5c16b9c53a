"""``--help`` of every command: each option with its meaning and its default (issue 28, item 8)."""

from __future__ import annotations

import argparse

from medstation.cli import build_parser


def _commands(parser, path=("medstation",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


def test_every_option_of_every_command_says_what_it_is_and_its_default():
    commands = list(_commands(build_parser()))
    assert len(commands) > 30
    for path, parser in commands:
        text = parser.format_help()
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            where = f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}"
            assert action.help and len(action.help) > 5, where
            d = action.default
            shown = not (d is None or d is False or d == "" or d is argparse.SUPPRESS) and action.nargs != 0
            if shown:
                assert "default" in parser._get_formatter()._get_help_string(action).lower(), where
        assert "usage:" in text


def test_train_help_names_its_defaults():
    train = dict(_commands(build_parser()))[("medstation", "train")]
    text = " ".join(train.format_help().split())
    for needle in ("--epochs EPOCHS epochs of --epoch-length steps; validated after each (default: 4)",
                   "(default: 100)", "(default: 8)", "(default: 0.0005)",
                   "--seed SEED fixes the patient split and the sampling (default: 0)"):
        assert needle in text, needle
