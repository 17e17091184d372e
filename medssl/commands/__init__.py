"""The project's commands, one module each with ``main(argv=None, prog=None) -> int`` (the exit
status). The ``medssl`` command (``medssl/cli.py``) and the scripts in ``Pre-Training/``,
``Downstream/`` and ``checkpoints/`` call the same functions, so both doors take the same options
and exit with the same status. ``medssl`` imports a command's module only when that command runs."""
