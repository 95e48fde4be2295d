"""The one exception tree. Adapters translate driver/greenswitch errors into these;
callers match by type, never by message text."""


class FsbillError(Exception):
    """Base of every error fsbill raises on purpose. Messages are operator-facing."""


class MoneyError(FsbillError, ValueError):
    """An amount that is not an exact decimal (a float, '1e3', '1,5', NaN...)."""


class ConfigError(FsbillError):
    """A configuration file or key that cannot be used."""


class RatingError(FsbillError):
    """A rate deck or number that cannot be rated."""


class RateDeckError(RatingError):
    """A malformed rate deck; carries the offending line number."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


class NumberError(RatingError):
    """A dialled number that is not digits after normalization."""


class NotFound(FsbillError):
    """An account, tariff or call that does not exist."""


class Conflict(FsbillError):
    """An operation that clashes with existing data (duplicate code, reference...)."""


class InvalidInput(FsbillError, ValueError):
    """A value a user supplied that is out of range or malformed."""


class DatabaseUnavailable(FsbillError):
    """The database could not be reached or failed mid-operation."""


class ProtocolError(FsbillError):
    """A malformed or hostile event-socket peer."""
