"""``python -m train.ie``: the instruction-data builder; the command line lives in :mod:`train.cli`."""

if __name__ == "__main__":
    from train.cli import ie_main

    raise SystemExit(ie_main())
