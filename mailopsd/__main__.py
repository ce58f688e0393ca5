"""``python -m mailopsd`` is the same as the ``mailopsd`` command."""

from mailopsd.cli.main import run

run()
