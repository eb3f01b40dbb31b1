"""Errors a user can fix: the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad input, a bad preset or a bad argument; the message says what and how to fix it."""


def close_matches(word: str, choices, n: int = 4) -> str:
    """A ' (did you mean: a, b?)' suffix, or the start of the list when nothing is close."""
    import difflib

    choices = list(choices)
    near = difflib.get_close_matches(word, choices, n=n, cutoff=0.5)
    if near:
        return f" (did you mean: {', '.join(near)}?)"
    shown = ", ".join(choices[:8]) + (", ..." if len(choices) > 8 else "")
    return f" (choose from: {shown})"


class BusyError(UserError):
    """Another process holds what this one needs (an output being written)."""


class LeaseLost(Exception):
    """A queued job's lease passed to another worker: this render must stop writing at once."""


def read_json(path, what: str, fix: str):
    """A JSON file someone else wrote (never a pickle), or a one-line error: `what` names the
    file's kind ("schedule file"), `fix` says what to give instead."""
    import json
    from pathlib import Path

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{what} '{path}' does not exist: check the path") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{what} '{path}' is not JSON ({exc}): {fix}") from None
