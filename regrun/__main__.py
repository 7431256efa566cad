"""`python -m regrun` is the same as the `regrun` console script."""

from regrun.cli import main

main()
