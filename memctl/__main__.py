"""``python -m memctl`` runs the command line."""

from memctl.cli import main

main()
