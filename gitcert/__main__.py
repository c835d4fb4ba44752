"""Allow ``python -m gitcert``."""

from gitcert.cli import main

main()
