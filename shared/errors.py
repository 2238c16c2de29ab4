"""Errors a person can act on. Each names what is wrong and where."""

from __future__ import annotations


class ConfigurationError(Exception):
    """An app setting is missing or malformed."""


class PolicyError(Exception):
    """The licensing policy file is malformed or refers to something the tenant does not have.

    `file` names the policy file, `key` the dotted path inside it, `problem` what is wrong.
    """

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {problem}")


class NonLoopbackGraphError(Exception):
    """The development credential was asked for a token for a Graph URL that is not loopback."""


class GraphReadError(Exception):
    """A Graph read failed or was incomplete. The data it was reading is unknown, never empty."""

    def __init__(self, what: str, status: int | None, code: str | None, message: str) -> None:
        self.what = what
        self.status = status
        self.code = code
        detail = f"HTTP {status}" if status is not None else "no response"
        if code:
            detail += f" {code}"
        super().__init__(f"could not read {what}: {detail}: {message}")
