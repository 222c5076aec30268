"""The ``switchboard`` command line (typer app in :mod:`cli.main`)."""
