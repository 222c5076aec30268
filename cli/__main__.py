"""``python -m cli`` runs the ``switchboard`` command (handy where the script is not on PATH)."""

from cli.main import app

app(prog_name="switchboard")
