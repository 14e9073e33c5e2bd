"""How a function invocation fails (in-process or remote); the pipeline maps them to replies."""

from __future__ import annotations


class FunctionError(Exception):
    """The function ran and failed (an exception, or a result Lambda could not serialise)."""

    def __init__(self, error_type: str, error_message: str, stack_trace: list[str] | None = None) -> None:
        super().__init__(f"{error_type}: {error_message}" if error_type else error_message)
        self.error_type = error_type
        self.error_message = error_message
        self.stack_trace = stack_trace or []


class FunctionTimeout(Exception):
    """No answer within the function's timeout (or no free slot within it)."""


class InvokeError(Exception):
    """A remote function could not be reached or answered wrongly."""
