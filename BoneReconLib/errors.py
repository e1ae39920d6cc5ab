"""Errors a user can fix by changing the input, reported as one clear sentence."""


class InputError(Exception):
    """Bad input (missing or unreadable file, wrong content, unwritable output).

    The message is a complete sentence meant for the user; the CLI prints it as-is and exits
    non-zero, the Slicer widgets show it in an error dialog.
    """
