"""The one exception tree of dnc-import, and the exit codes it maps to.

Every error the core raises is an ``ImporterError``; third-party exceptions (httpx, csv,
zipfile, sqlite3, calamine, openpyxl) are translated where they happen, ``raise ... from exc``.
Each message is one line that names the file, sheet, row or option at fault and says the fix.
No message ever contains the token.

    ImporterError                     exit code
    ├── UsageError                    2  a bad option or option value
    │   └── ConfigError               2  a bad config file (unknown key, wrong type)
    ├── InputError                    2  a file that cannot be read as a phone list
    ├── TokenError                    2  no token given, or its file is unreadable / too open
    ├── ReportError                   2  the reports folder cannot be written
    ├── JournalError                  2  a run journal missing, corrupt, or from another version
    ├── LedgerError                   2  the ledger of confirmed numbers cannot be opened or written
    ├── BatchRefused                  -  (internal to the chunker) the server refused one batch
    │   ├── MalformedBatch                400 SOME PARAMETERS ARE REQUIRED: split it and retry
    │   └── BatchTooLarge                 413 or "too large": split it, smaller batches after
    └── SendStopped                   the run stopped while sending (rows left are not_sent)
        ├── AuthRefused               4  401, or 403 "PLEASE VALIDATE TOKEN"
        ├── QuotaExhausted            3  403 "TOKEN LIMIT EXCEEDED" or --max-calls reached
        ├── LockTimeout               3  another run held the token past --lock-wait
        ├── BatchFailed               3  a batch still failed after its retries
        ├── EndpointRefused           2  400 "API ... DOES NOT EXIST": the URL is wrong
        └── Interrupted               3  Ctrl-C or SIGTERM
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What the process exit code tells a scheduler to do next."""

    OK = 0
    """Finished; every sendable number was accepted (invalid or duplicate rows alone are fine)."""
    SOME_FAILED = 1
    """Finished, but some numbers were rejected, uncertain or failed (or invalid with --strict)."""
    USAGE = 2
    """Usage, configuration or input error: nothing was sent. Fix and run again."""
    STOPPED = 3
    """Stopped early; some numbers were not sent. `dnc-import resume RUN_ID` later."""
    AUTH = 4
    """The server refused the token. Get a valid token, then resume."""


class ImporterError(Exception):
    """Base of every error dnc-import raises on purpose."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(ImporterError):
    """A bad option or option value."""


class ConfigError(UsageError):
    """A bad config file."""


class InputError(ImporterError):
    """A file that cannot be read as a list of phones."""


class TokenError(ImporterError):
    """No token, or a token file that cannot be used."""


class ReportError(ImporterError):
    """The reports folder or a report file cannot be written."""


class JournalError(ImporterError):
    """A run journal that is missing, corrupt or cannot be resumed."""


class LedgerError(ImporterError):
    """The ledger file cannot be created, opened or written."""


class BatchRefused(ImporterError):
    """The server refused one batch as a whole; the chunker splits it (never leaves the core)."""


class MalformedBatch(BatchRefused):
    """400 SOME PARAMETERS ARE REQUIRED: the batch is refused as malformed."""


class BatchTooLarge(BatchRefused):
    """413, or a body saying the batch is too large."""


class SendStopped(ImporterError):
    """The run stopped while sending; what was not confirmed is left ``not_sent``.

    ``reason`` is the kebab-case reason code given to the rows left unsent.
    """

    exit_code = ExitCode.STOPPED
    reason: str = "run-stopped"


class AuthRefused(SendStopped):
    """The server refused the token (401, or 403 PLEASE VALIDATE TOKEN)."""

    exit_code = ExitCode.AUTH
    reason = "token-refused"


class QuotaExhausted(SendStopped):
    """The daily call quota is spent, or --max-calls was reached."""

    reason = "quota-exhausted"


class LockTimeout(SendStopped):
    """Another run held this server+token past --lock-wait."""

    reason = "token-busy"


class BatchFailed(SendStopped):
    """A batch still failed after its retries; the run stops there."""

    reason = "previous-batch-failed"


class EndpointRefused(SendStopped):
    """The server says the API does not exist: the URL or server code is wrong."""

    exit_code = ExitCode.USAGE
    reason = "endpoint-refused"


class Interrupted(SendStopped):
    """Ctrl-C or SIGTERM while sending."""

    reason = "interrupted"
