"""One-line, user-facing errors.

Every problem a user can fix (a bad file, a wrong config value) is raised as a
TraitflowError whose text names the file, the problem and the fix. Scripts print
it as a single line instead of a traceback.
"""


class TraitflowError(Exception):
    """A problem in the user's input, with the file, the problem and the fix."""

    def __init__(self, where, problem, fix=None):
        self.where, self.problem, self.fix = str(where), problem, fix
        text = f"{self.where}: {problem}"
        if fix:
            text += f"; fix: {fix}"
        super().__init__(text)

