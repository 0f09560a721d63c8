"""Errors that the CLI and the Slicer module turn into one clear sentence for the user."""


class MedSegAIError(Exception):
    """Base class of every error MedSegAILib raises on purpose."""


class InputError(MedSegAIError, ValueError):
    """The user's input (file, folder, image content, parameter) cannot be used.

    The message names the problem in one sentence; the CLI prints it and exits with code 2.
    """


class MissingDependencyError(MedSegAIError, ImportError):
    """An optional dependency (PyMaxflow, torch, MONAI, slicer-core) is not installed."""

    def __init__(self, package: str, extra: str, purpose: str):
        self.package = package
        self.extra = extra
        super().__init__(
            f"{purpose} needs the Python package '{package}', which is not installed; "
            f"install it with: pip install 'medsegai[{extra}]'"
        )


#: How every domain refusal starts (OutOfDomainError), for the panel to recognise it.
OUT_OF_DOMAIN_START = "the input is unlike "


class OutOfDomainError(InputError):
    """The input is unlike what a method learned from (a deep model's training data, an atlas
    library's images); the message starts with :data:`OUT_OF_DOMAIN_START` and names the
    reasons in one line."""


class Cancelled(MedSegAIError):
    """The user cancelled a running job; nothing was written."""


class ResourceError(MedSegAIError):
    """The job would need more memory (or another resource) than is available."""


#: The errors that are the user's to mend (bad input, a missing package, too little memory):
#: the CLI exits with code 2 for them, 1 for any other failure.
USER_ERRORS = (InputError, MissingDependencyError, ResourceError)


def first_line(exc: BaseException, default: str = "") -> str:
    """The first line of ``exc``'s message (libraries such as ITK write several), or ``default``
    when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else default
