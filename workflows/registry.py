"""The workflows this project's workers run.

Where it sits: worker.py registers every class listed here; the workflow modules add themselves
to the list as they are written. Imported by the worker, never by workflow code.
"""

WORKFLOWS: list[type] = []
