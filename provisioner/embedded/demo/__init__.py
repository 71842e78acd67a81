"""``zonal demo``: :mod:`.story` tells the zone story, :mod:`.ui` prints it, :mod:`.support` holds the
helpers. The sub-command and its flags are registered by :mod:`provisioner.cli.embedded_entry`.
"""
