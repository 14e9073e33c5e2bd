"""Kernel exceptions. Pure Python, raised by both the compiled and the Python builds."""


class KernelError(Exception):
    """Root of every exception raised by a fastgw_core kernel."""


class RouteError(KernelError, ValueError):
    """A route template is invalid or conflicts with one already added."""


class RouteConflictError(RouteError):
    """Two routes would match the same requests with the same precedence."""


class InvalidPathError(KernelError, ValueError):
    """A request path cannot be normalised (bad percent-encoding, NUL, not origin-form)."""


class HeadError(KernelError, ValueError):
    """An HTTP head that cannot be relayed (malformed, or over a fixed limit)."""
