"""Logging setup: ``--logging-format text|json`` and ``-v`` levels, shared by every sub-command.

Each record carries the RPC's request id and the volume/node ids when the CSI interceptor set them.
A record's message is one line of at most :data:`MESSAGE_LIMIT` characters: control characters a client
sent (a volume name may hold LF) are escaped, so no input can forge or flood log lines.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from typing import Any

_EXTRA_KEYS = ("rpc", "request_id", "volume_id", "node_id", "snapshot_id", "csi_name", "claim")
MESSAGE_LIMIT = 8192
_CONTROL = re.compile("[\\x00-\\x08\\x0a-\\x1f\\x7f-\\x9f\\u2028\\u2029]")


def one_line(message: str) -> str:
    """``message`` with control characters escaped (``\\n``, ``\\x01``) and cut at MESSAGE_LIMIT."""
    if len(message) > MESSAGE_LIMIT:
        message = f"{message[:MESSAGE_LIMIT]}… ({len(message)} characters)"
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], message)


def add_logging_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--logging-format", choices=("text", "json"), default="text", help="log line format (default text)"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        dest="verbosity",
        action="count",
        default=0,
        help="more logs: -v info, -vv debug (default: warnings and zonal's own info lines)",
    )


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": one_line(record.getMessage()),
        }
        for key in _EXTRA_KEYS:
            value = getattr(record, key, None)
            if value:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(f"{k}={getattr(record, k)}" for k in _EXTRA_KEYS[1:] if getattr(record, k, None))
        return f"{line} [{ids}]" if ids else line


def setup_logging(fmt: str, verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Our own start-up and RPC lines are useful at the default level too.
    logging.getLogger("zonal").setLevel(min(level, logging.INFO))
    for noisy in ("botocore", "boto3", "kubernetes", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    # urllib3 warns on every connection retry; our own error line says what failed (-vv shows them).
    logging.getLogger("urllib3").setLevel(logging.DEBUG if verbosity >= 2 else logging.ERROR)
