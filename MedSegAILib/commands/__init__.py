"""Sub-commands of the ``medsegai`` CLI.

Each module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``;
``MedSegAILib.cli`` lists them in ``COMMANDS``. Commands raise MedSegAIError subclasses for
bad input; the CLI prints the message on one line and exits with code 2.
"""
