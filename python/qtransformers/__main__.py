"""``python -m qtransformers``: the command-line interface."""

from qtransformers.cli import main

raise SystemExit(main())
