"""``python -m train.generate``: the command line lives in :mod:`train.cli`."""

if __name__ == "__main__":
    from train.cli import generate_main

    raise SystemExit(generate_main())
