"""Error types: user errors (bad input, bad files) are separated from internal bugs.

Everything a user can cause derives from ``DsnetError``; the CLI prints those as one line
and exits non-zero, and lets anything else surface as a traceback (a bug to report).
"""


class DsnetError(Exception):
    """Something the user can fix: a bad argument, file, checkpoint or bundle."""


class SpecError(DsnetError, ValueError):
    """An architecture spec that cannot describe a network."""


class RouteError(DsnetError, ValueError):
    """A route name or index the architecture does not have."""


class CheckpointError(DsnetError):
    """A checkpoint that cannot be read safely or does not fit the architecture."""


class BundleError(DsnetError):
    """A bundle directory or manifest that fails validation."""


class InputError(DsnetError, ValueError):
    """An input batch the dispatcher cannot run: wrong type, rank, shape or dtype, empty, NaN/inf,
    or an unknown route.  Also a ``ValueError``, so code that catches that keeps working."""
