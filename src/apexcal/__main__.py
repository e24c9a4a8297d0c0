"""``python -m apexcal`` runs the command line."""

from apexcal.cli import main

main()
