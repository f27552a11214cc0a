"""The one exception type users see.

A KdError carries a single line that names the file and line, tensor or flag at
fault. run.py prints it without a traceback (unless --debug) and exits non-zero;
anything else escaping is a bug in kd-ref.
"""


class KdError(Exception):
    """Bad input from the user: message is one line, names what is wrong and where."""


class NonFinite(KdError):
    """A NaN or infinite loss or weight: training stops; its last checkpoint holds the last good state."""


def check_flags(config, rules: dict) -> None:
    """rules: field name -> (predicate, what it must be). The field is named as its flag."""
    for name, (ok, must) in rules.items():
        value = getattr(config, name)
        if value is not None and not ok(value):
            raise KdError(f"--{name.replace('_', '-')} {value}: must be {must}")


def one_of(choices: dict) -> dict:
    """check_flags rules for fields that take one of a few values: field name -> its values."""
    return {name: (lambda v, values=values: v in values, "one of " + ", ".join(values))
            for name, values in choices.items()}
