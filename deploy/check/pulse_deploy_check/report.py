"""Collects failures per check and prints the one-line summaries.

Every check reports under its own name so the output (and the fault self-test in
scripts/check-deploy.sh, which greps it) says which family found a problem; failures are
printed together at the end, so one run shows all of them rather than the first.
"""

import sys


class Report:
    """The failures found so far, in the order they were found."""

    def __init__(self, stream=None):
        self.errors = []
        self.stream = stream

    def say(self, check, text):
        print(f"pulse: check-deploy: {check}: {text}", file=self.stream or sys.stderr)

    def fail(self, check, text):
        self.errors.append(f"{check}: {text}")

    def count(self, check):
        return sum(1 for e in self.errors if e.startswith(check + ":"))

    def mark(self):
        """A point to compare with `clean_since`: a section's summary is printed only when
        it added no failure."""
        return len(self.errors)

    def clean_since(self, mark):
        return len(self.errors) == mark

    def print_errors(self):
        for e in self.errors:
            print(f"pulse: error: check-deploy: {e}", file=self.stream or sys.stderr)
