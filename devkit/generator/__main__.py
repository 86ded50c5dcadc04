"""``python -m devkit.generator``: see `devkit.generator.cli`."""

from devkit.generator.cli import main

raise SystemExit(main())
