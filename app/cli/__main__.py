"""``python -m app.cli``: the same as the ``attention-flows`` command."""

from app.cli.main import main

raise SystemExit(main())
