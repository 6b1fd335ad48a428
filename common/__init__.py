"""Small pieces shared by every package: the user-error type and atomic file writes."""
from common.errors import UsageError

__all__ = ["UsageError"]
