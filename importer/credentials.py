"""Where the token comes from: an environment variable or a file only the owner can read.

The token itself is never an option value (it would show in the process list and shell history)
and never written to any file by this tool.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from importer.config import Token
from importer.errors import TokenError

TOKEN_ENV = "WOLKVOX_TOKEN"


def load_token(
    token_file: Path | None,
    environ: Mapping[str, str] | None = None,
    env_name: str = TOKEN_ENV,
) -> Token:
    """The token from ``token_file`` if given, else from the variable ``env_name`` ($WOLKVOX_TOKEN).

    A token file readable or writable by group or others is refused: it is a secret.
    """
    env = os.environ if environ is None else environ
    if token_file is not None:
        return _from_file(token_file)
    value = env.get(env_name, "").strip()
    if not value:
        raise TokenError(
            f"no token: set {env_name} in the environment, or give --token-file PATH "
            f"(a file holding only the token, mode 600)"
        )
    return Token(value)


def _from_file(path: Path) -> Token:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise TokenError(f"--token-file {path} is not a regular file: give the token's file")
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise TokenError(
                f"--token-file {path} can be read by other users (mode "
                f"{stat.S_IMODE(info.st_mode):o}): run `chmod 600 {path}` and try again"
            )
        text = path.read_text(encoding="utf-8")
    except TokenError:
        raise
    except FileNotFoundError as exc:
        raise TokenError(
            f"--token-file {path} does not exist: give the path of the token's file"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenError(
            f"--token-file {path} cannot be read ({type(exc).__name__}): check the path and its permissions"
        ) from exc
    value = text.strip()
    if not value or "\n" in value:
        raise TokenError(f"--token-file {path} must hold the token alone, on one line")
    return Token(value)
