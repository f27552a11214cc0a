"""The one exception type users see.

A KdError carries a single line that names the file and line, tensor or flag at
fault. run.py prints it without a traceback (unless --debug) and exits non-zero;
anything else escaping is a bug in kd-ref.
"""


class KdError(Exception):
    """Bad input from the user: message is one line, names what is wrong and where."""
