"""``tagger review``: the web app on the catalogue (docs/review.md)."""

from __future__ import annotations

import argparse
import secrets
import sys

from tagger.cli.common import EXIT_OK, UsageError, catalogue_of, log
from tagger.config import Config


def add_parser(sub, parents) -> None:
    review = sub.add_parser(
        "review", parents=parents,
        help="a web page to hear, judge and correct the tracks (docs/review.md)",
        description="Serve a local web app on the catalogue: the doubtful tracks, each "
                    "track's segment vote and its audio, corrections, stats. The first line "
                    "printed is the address to open (with its one-time token).")
    review.add_argument("--host", help="address to listen on (review.host; default 127.0.0.1)")
    review.add_argument("--port", type=int,
                        help="port (review.port; default 8765; 0: any free port)")
    review.add_argument("--read-only", action="store_true",
                        help="refuse every change: no corrections, no tag writes")
    review.add_argument("--remember", type=int, metavar="DAYS",
                        help="keep the session that many days, across browser restarts "
                             "(a persistent cookie; default: it ends with the browser)")
    review.add_argument("--allow-remote", action="store_true",
                        help="allow a --host that other machines can reach (anyone who has "
                             "the token or password can then change your tags)")


def cmd_review(args: argparse.Namespace, config: Config) -> int:
    from tagger.library.catalogue import open_catalogue
    from tagger.review import create_app, is_loopback, listen, serve, start_url

    host = args.host or config.review.host
    port = config.review.port if args.port is None else args.port
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, not {port}",
                         prog="tagger review")
    if args.remember is not None and not 1 <= args.remember <= 3650:
        raise UsageError(f"--remember must be between 1 and 3650 days, not {args.remember}",
                         prog="tagger review")
    if not is_loopback(host):
        if not args.allow_remote:
            raise UsageError(f"{host} is not a loopback address: other machines could reach "
                             "the review page; add --allow-remote if that is what you want",
                             prog="tagger review")
        log.warning("tagger review listens on %s: reachable from other machines, guarded "
                    "only by the token%s", host,
                    " and the password" if config.review.password else "")
    catalogue = (open_catalogue(config.database_url, upgrade=False) if args.read_only
                 else catalogue_of(config))
    with catalogue:
        from tagger.service.policy import resolve_threshold

        config = resolve_threshold(config, catalogue)  # "auto": as a scan would take it now
        sock = listen(host, port)
        token = secrets.token_urlsafe(24)
        allowed = None
        if is_loopback(host):  # a DNS-rebinding page must not reach us under another name
            allowed = ["127.0.0.1", "localhost", "::1", "[::1]", host]
        app = create_app(config, catalogue, token=token, read_only=args.read_only,
                         password=config.review.password or None, allowed_hosts=allowed,
                         remember_days=args.remember)
        print(f"Review at {start_url(sock, token)}", flush=True)
        print("(Ctrl-C stops it)", file=sys.stderr, flush=True)
        serve(app, sock)
    return EXIT_OK
