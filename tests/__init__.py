"""sweeper's tests: a package, so its helpers import as `tests.<folder>.<module>` and no test
folder can stand in for a real package of the same name (tests/agent for `agent`)."""
