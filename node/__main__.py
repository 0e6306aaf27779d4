"""`python -m node` runs the medvault command."""

from node.cli import main

main()
