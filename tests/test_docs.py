"""Every command has help and is in the README; every option of every command is documented."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from importer.cli import cli
from importer.errors import ExitCode

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
COMMANDS = sorted(cli.commands)


@pytest.mark.parametrize("name", COMMANDS)
def test_command_has_help(name: str) -> None:
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: cli {name}" in result.output or f"Usage: dnc-import {name}" in result.output
    command = cli.commands[name]
    assert command.help, f"{name} has no docstring"


@pytest.mark.parametrize("name", COMMANDS)
def test_command_is_in_readme(name: str) -> None:
    assert f"dnc-import {name}" in README


@pytest.mark.parametrize(
    "option",
    sorted(
        {
            opt
            for command in cli.commands.values()
            for param in command.params
            if isinstance(param, click.Option)
            for opt in param.opts
            if opt.startswith("--")
            and opt not in ("--help", "--host", "--port", "--token", "--quota", "--db")
        }
    ),
)
def test_option_is_in_readme(option: str) -> None:
    assert re.search(re.escape(option) + r"\b", README), f"{option} is not in README.md"


def test_exit_codes_table_matches_enum() -> None:
    for code in ExitCode:
        assert re.search(rf"^\| {int(code)} \|", README, re.MULTILINE), (
            f"exit code {int(code)} missing"
        )


def test_readme_has_the_two_commands() -> None:
    assert "dnc-import demo" in README
    assert "python -m pytest" in README
