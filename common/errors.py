"""The one exception type that means "the user gave bad input".

Anything raised as :class:`UsageError` reaches the command line as exit status 2 and a single
line on stderr (``error: <message>``), with no traceback. The message should name the input
(file, key, flag) and say how to fix it.
"""


class UsageError(Exception):
    """Bad input or configuration: shown to the user as one line, exit status 2."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # always one line
