"""``python -m provisioner`` is the same as the ``zonal`` console script."""

from provisioner.cli import run

run()
