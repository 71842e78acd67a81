"""``python -m provisioner.embedded.ec2``: the simulator as an HTTP server on 127.0.0.1.

Prints one JSON line (endpoint, account, region, zones, instance ids) once it listens, then serves
until SIGINT/SIGTERM. Only flag parsing lives here.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from provisioner.embedded.ec2.app import Simulator
from provisioner.embedded.ec2.config import DEFAULT_REGION, Delays, Faults, SimConfig
from provisioner.embedded.ec2.server import SimServer


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m provisioner.embedded.ec2", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    p.add_argument("--region", default=DEFAULT_REGION)
    p.add_argument("--zones", default="", help="comma-separated subset of the region's zones")
    p.add_argument("--account-id", default=None)
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every token-bucket refill rate")
    p.add_argument("--burst-scale", type=float, default=1.0, help="multiplies every token-bucket size")
    p.add_argument(
        "--neighbour",
        action="append",
        default=[],
        metavar="ACTION=RATE",
        help="another tool of the account spends RATE calls per second of ACTION's bucket, first",
    )
    p.add_argument("--no-throttling", action="store_true")
    p.add_argument("--instant", action="store_true", help="every state transition done at once")
    p.add_argument("--create-delay", type=float, default=Delays.volume_create)
    p.add_argument("--attach-delay", type=float, default=Delays.attach)
    p.add_argument("--detach-delay", type=float, default=Delays.detach)
    p.add_argument("--throttle-rate", type=float, default=0.0)
    p.add_argument("--error-rate", type=float, default=0.0, help="fraction answered 500 InternalError")
    p.add_argument("--volume-error-rate", type=float, default=0.0)
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every admitted call")
    p.add_argument("--jitter", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--instance", action="append", default=[], metavar="ZONE", help="start an instance here")
    return p


def _neighbours(items: Sequence[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        action, sep, rate = item.partition("=")
        try:
            out[action] = float(rate)
        except ValueError:
            sep = ""
        if not sep or not action:
            raise SystemExit(f"--neighbour {item!r}: expected ACTION=RATE, such as CreateVolume=2.5")
    return out


def config_from(args: argparse.Namespace) -> SimConfig:
    delays = (
        Delays.instant()
        if args.instant
        else Delays(volume_create=args.create_delay, attach=args.attach_delay, detach=args.detach_delay)
    )
    return SimConfig(
        region=args.region,
        zones=tuple(z for z in args.zones.split(",") if z),
        account_id=args.account_id,
        scale=args.scale,
        burst_scale=args.burst_scale,
        neighbours=_neighbours(args.neighbour),
        throttling=not args.no_throttling,
        delays=delays,
        faults=Faults(args.throttle_rate, args.error_rate, args.volume_error_rate),
        default_latency=args.latency,
        latency_jitter=args.jitter,
        seed=args.seed,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sim = Simulator(config_from(args))
    instances = [sim.create_instance(zone) for zone in args.instance]
    server = SimServer(sim, host=args.host, port=args.port).start()

    def _stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    print(
        json.dumps({"endpoint_url": server.endpoint_url, **sim.describe(), "instances": instances}),
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
