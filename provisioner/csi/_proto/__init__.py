"""Generated CSI v1.12.0 bindings: do not edit, run python tools/genproto.py."""
