"""The emulator's command line: ``cfimages-emulator``, or ``python -m`` on this package.

Prints where it listens and the credentials it accepts, including a ready
``export AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT='...'`` line, then serves until Ctrl-C or
SIGTERM. Lines before "Press Ctrl-C" are ``name: value`` pairs, so a script can read them.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from airflow_provider_cfimages.emulator.faults import FaultPlan
from airflow_provider_cfimages.emulator.server import EmulatorServer

_RATE = re.compile(r"^(\d+)/(\d+(?:\.\d+)?)$")


def _rate_limit(text: str) -> tuple[int, float]:
    match = _RATE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError("expected REQUESTS/SECONDS, e.g. 1200/300")
    return int(match.group(1)), float(match.group(2))


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("expected a probability between 0 and 1, e.g. 0.05")
    return value


def _statuses(text: str) -> tuple[int, ...]:
    try:
        statuses = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError("expected HTTP statuses, e.g. 502,503,504") from None
    if not statuses or any(not 400 <= status <= 599 for status in statuses):
        raise argparse.ArgumentTypeError("expected 4xx/5xx statuses, e.g. 502,503,504")
    return statuses


def _account_id(text: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{32}", text):
        raise argparse.ArgumentTypeError("an account id is 32 lowercase hex characters")
    return text


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="cfimages-emulator",
        description="Serve a local Cloudflare Images API (List images V2 and friends).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (loopback)")
    parser.add_argument("--port", type=int, default=8787, help="port; 0 picks a free one")
    parser.add_argument("--images", type=int, default=0, help="generated images to seed")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated inventory")
    parser.add_argument("--seed-file", help="JSON list or JSON Lines file of images to seed")
    parser.add_argument("--account-id", type=_account_id, help="32-hex account id")
    parser.add_argument("--token", help="the API token to accept")
    parser.add_argument("--email", help="the email to accept with the global API key")
    parser.add_argument("--global-key", help="the global API key to accept")
    parser.add_argument(
        "--rate-limit",
        type=_rate_limit,
        metavar="N/SECONDS",
        help="answer 429 (code 971) past N requests per window, e.g. 1200/300",
    )
    parser.add_argument(
        "--retry-after", type=int, help="Retry-After seconds of the 429s (default: time left)"
    )
    parser.add_argument(
        "--fail-rate",
        type=_probability,
        default=0.0,
        metavar="P",
        help="fail this fraction of API requests with an HTML 5xx page, e.g. 0.05",
    )
    parser.add_argument(
        "--fail-statuses",
        type=_statuses,
        default=(502, 503, 504),
        metavar="S,S",
        help="statuses used by --fail-rate (default 502,503,504)",
    )
    parser.add_argument(
        "--page-cap",
        type=int,
        default=1000,
        metavar="N",
        help="serve at most N images per list page, whatever per_page asks for "
        "(default 1000, as the live docs say; up to 10000)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator until interrupted; returns the exit status."""
    args = build_parser().parse_args(argv)
    faults = FaultPlan()
    if args.rate_limit is not None:
        requests, window = args.rate_limit
        faults.rate_limit(requests, window, retry_after=args.retry_after)
    if args.fail_rate:
        faults.fail_randomly(args.fail_rate, args.fail_statuses, seed=args.seed)
    try:
        emulator = EmulatorServer(
            images=args.images,
            seed=args.seed,
            seed_file=args.seed_file,
            host=args.host,
            port=args.port,
            account_id=args.account_id,
            api_token=args.token,
            email=args.email,
            global_key=args.global_key,
            faults=faults,
            verbose=args.verbose,
            page_cap=args.page_cap,
        )
        emulator.start()
    except (OSError, ValueError) as error:
        print(f"cfimages-emulator: {error}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    if not _is_loopback(args.host):
        print(
            f"warning: listening on {args.host}, not loopback: anyone who can reach it "
            "and knows the printed credentials can use it",
            file=sys.stderr,
        )
    lines = [
        f"Cloudflare Images emulator serving {emulator.backend.count} images "
        f"(seeded in {emulator.seed_seconds:.2f}s)",
        f"base_url: {emulator.base_url}",
        f"account_id: {emulator.account_id}",
        f"api_token: {emulator.api_token}",
        f"email: {emulator.email}",
        f"global_key: {emulator.global_key}",
        f"control: {emulator.control_url}/faults",
        "export AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT=" + shlex.quote(emulator.connection_json()),
        "Press Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
    print("cfimages-emulator: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
