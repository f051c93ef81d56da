"""The emulator's command line: ``cfimages-emulator``, or ``python -m`` on this package.

Prints where it listens and the credentials it accepts, including a ready
``export AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT='...'`` line, then serves until Ctrl-C or
SIGTERM. Lines before "Press Ctrl-C" are ``name: value`` pairs or ``export`` lines, so a
script can read them. With several accounts (``--accounts N``, or a ``--seed-file`` naming
accounts) each account ``n`` (from 1) also gets ``account_<n>_id``, ``account_<n>_api_token``
and ``account_<n>_images`` lines and an ``export AIRFLOW_CONN_CLOUDFLARE_IMAGES_ACCOUNT_<n>``
line; the first account is also the default connection.
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


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError("expected a positive number of seconds, e.g. 20")
    return value


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


def _account_count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("expected a number of accounts >= 1, e.g. 3")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="cfimages-emulator",
        description="Serve a local Cloudflare Images API (List images V2 and friends).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (loopback)")
    parser.add_argument("--port", type=int, default=8787, help="port; 0 picks a free one")
    parser.add_argument(
        "--images", type=int, default=0, help="generated images to seed (in every account)"
    )
    parser.add_argument(
        "--accounts",
        type=_account_count,
        metavar="N",
        help="serve N accounts, each with its own inventory and credentials",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated inventory")
    parser.add_argument(
        "--seed-file",
        help='JSON list or JSON Lines file of images to seed, or {"accounts": {"<id>": [...]}}',
    )
    parser.add_argument("--account-id", type=_account_id, help="32-hex account id")
    parser.add_argument("--token", help="the API token to accept")
    parser.add_argument("--email", help="the email to accept with the global API key")
    parser.add_argument("--global-key", help="the global API key to accept")
    parser.add_argument(
        "--rate-limit",
        type=_rate_limit,
        metavar="N/SECONDS",
        help="Cloudflare's rule: N requests per window, then every request refused (429, "
        "code 971) for the lockout; e.g. 1200/300 as the real API, 12/10 scaled down",
    )
    parser.add_argument(
        "--lockout",
        type=_seconds,
        metavar="SECONDS",
        help="with --rate-limit: how long every request is refused once the quota is "
        "exceeded (default: the rest of the window, or --retry-after)",
    )
    parser.add_argument(
        "--no-ratelimit-headers",
        action="store_true",
        help="with --rate-limit: do not send the Ratelimit / Ratelimit-Policy headers",
    )
    parser.add_argument(
        "--retry-after", type=int, help="Retry-After seconds of the 429s (default: time left)"
    )
    parser.add_argument(
        "--batch-token-lifetime",
        type=_seconds,
        metavar="SECONDS",
        help="how long an Images batch token is accepted (default 1800)",
    )
    parser.add_argument(
        "--batch-rate",
        type=int,
        metavar="N",
        help="requests per second allowed per batch token (default 200)",
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


def _inventory_size(emulator: EmulatorServer) -> str:
    accounts = emulator.accounts
    total = sum(account.backend.count for account in accounts)
    return f"{total} images" + (f" in {len(accounts)} accounts" if len(accounts) > 1 else "")


def _account_lines(emulator: EmulatorServer) -> list[str]:
    """Each account's id, token, size and ready connection, when there are several."""
    if len(emulator.accounts) < 2:
        return []
    lines = []
    connections = emulator.account_connections()
    for number, (account, (conn_id, connection)) in enumerate(
        zip(emulator.accounts, connections.items(), strict=True), start=1
    ):
        lines += [
            f"account_{number}_id: {account.account_id}",
            f"account_{number}_api_token: {account.api_token}",
            f"account_{number}_images: {account.backend.count}",
            f"export AIRFLOW_CONN_{conn_id.upper()}={shlex.quote(connection)}",
        ]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator until interrupted; returns the exit status."""
    args = build_parser().parse_args(argv)
    faults = FaultPlan()
    if args.rate_limit is not None:
        requests, window = args.rate_limit
        faults.rate_limit(
            requests,
            window,
            retry_after=args.retry_after,
            block_seconds=args.lockout,
            headers=not args.no_ratelimit_headers,
        )
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
            accounts=args.accounts,
            verbose=args.verbose,
            page_cap=args.page_cap,
        )
        emulator.batch.configure(
            token_lifetime=args.batch_token_lifetime, requests_per_second=args.batch_rate
        )
        emulator.start()
    except (OSError, ValueError) as error:  # SeedFileError is a ValueError
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
        f"Cloudflare Images emulator serving {_inventory_size(emulator)} "
        f"(seeded in {emulator.seed_seconds:.2f}s)",
        f"base_url: {emulator.base_url}",
        f"account_id: {emulator.account_id}",
        f"api_token: {emulator.api_token}",
        f"email: {emulator.email}",
        f"global_key: {emulator.global_key}",
        f"batch_base_url: {emulator.batch_url}",
        f"control: {emulator.control_url}/faults",
        "export AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT=" + shlex.quote(emulator.connection_json()),
        *_account_lines(emulator),
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
