"""`python -m memweave.cli`: the `memweave` command without its console script."""

from memweave.cli import main

raise SystemExit(main())
