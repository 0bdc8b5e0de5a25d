"""Where the token comes from, and that it never shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from importer.config import Token
from importer.credentials import load_token
from importer.errors import TokenError

SECRET = "tok-5f3a9c-DO-NOT-LEAK"


def test_token_from_environment() -> None:
    assert load_token(None, {"WOLKVOX_TOKEN": f"  {SECRET}\n"}).reveal() == SECRET


def test_no_token_says_how_to_give_one() -> None:
    with pytest.raises(TokenError) as err:
        load_token(None, {})
    assert str(err.value) == (
        "no token: set WOLKVOX_TOKEN in the environment, or give --token-file PATH "
        "(a file holding only the token, mode 600)"
    )


def test_token_file_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    assert load_token(path, {"WOLKVOX_TOKEN": "other"}).reveal() == SECRET


def test_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(SECRET)
    path.chmod(0o644)
    with pytest.raises(TokenError) as err:
        load_token(path, {})
    assert str(err.value) == (
        f"--token-file {path} can be read by other users (mode 644): "
        f"run `chmod 600 {path}` and try again"
    )
    assert SECRET not in str(err.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [("", "must hold the token alone, on one line"), ("a\nb", "must hold the token alone")],
)
def test_token_file_must_hold_one_token(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "token"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(TokenError, match=expected):
        load_token(path, {})


def test_missing_token_file(tmp_path: Path) -> None:
    with pytest.raises(TokenError, match="does not exist: give the path"):
        load_token(tmp_path / "nope", {})


def test_token_repr_hides_the_secret() -> None:
    token = Token(SECRET)
    assert SECRET not in repr(token)
    assert SECRET not in str(token)
    assert SECRET not in f"{token!r} {token}"
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(token)


def test_token_from_a_named_environment_variable() -> None:
    env = {"WOLKVOX_TOKEN": "not-this", "DNC_TOKEN_WV0002": SECRET}
    assert load_token(None, env, env_name="DNC_TOKEN_WV0002").reveal() == SECRET
    with pytest.raises(TokenError, match="^no token: set OTHER_NAME in the environment"):
        load_token(None, env, env_name="OTHER_NAME")
