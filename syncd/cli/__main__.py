"""``python -m syncd.cli``: the same as the ``syncd`` console script."""

from syncd.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
