"""`python -m node` runs the medvault command."""

from node.cli.main import main

main()
