"""`python -m sweeper` runs the CLI."""

from __future__ import annotations

from sweeper.cli import main

if __name__ == "__main__":
    main()
