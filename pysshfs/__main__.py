"""`python -m pysshfs` is the same as the `pysshfs` command."""

from pysshfs.cli import main

raise SystemExit(main())
