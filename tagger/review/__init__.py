"""``tagger review``: a local web app over the catalogue to hear, judge and correct tracks
(docs/review.md). :func:`create_app` builds the ASGI app; :func:`serve` runs it."""

from tagger.review.app import create_app
from tagger.review.server import is_loopback, listen, serve, start_url

__all__ = ["create_app", "serve", "listen", "start_url", "is_loopback"]
