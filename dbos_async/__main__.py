"""``python -m dbos_async``: the ``dbos-async`` command line."""

from dbos_async.cli import main

if __name__ == "__main__":
    main()
