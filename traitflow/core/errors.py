"""One-line, user-facing errors.

Every problem a user can fix (a bad file, a wrong config value) is raised as a
TraitflowError whose text names the file, the problem and the fix. It reaches
the terminal as a single line, `traitflow [stage] error: ...`, never a traceback.
"""

import sys


class TraitflowError(Exception):
    """A problem in the user's input, with the file, the problem and the fix."""

    def __init__(self, where, problem, fix=None):
        self.where, self.problem, self.fix = str(where), problem, fix
        text = f"{self.where}: {problem}"
        if fix:
            text += f"; fix: {fix}"
        super().__init__(text)


def error_line(stage, message):
    """The one line a user sees; the end-of-run summary finds failures by its prefix."""
    return f"traitflow [{stage}] error: {message}"


def exit_with_error(stage, err):
    """Print one line and exit 1: used where a traceback would be noise (Snakefile parse time)."""
    print(error_line(stage, err), file=sys.stderr, flush=True)
    raise SystemExit(1)
