"""The review web app: queues of doubtful tracks, a track page to hear and judge one, the
corrections, classifying a dropped file, the stats. Starlette with Jinja2 templates, pages
rendered on the server, one small script of ours (static/review.js); nothing from the internet.

Security (docs/review.md): every page needs a session, got by opening the start URL with its
random token (or with the configured password); the session is an HttpOnly, SameSite=Strict
cookie. Every POST also needs the session's CSRF token. Tracks are addressed by their
catalogue id, never by a path from the client, and a file is only read when it is
catalogued and inside the library (symlinks resolved). ``read_only`` refuses every write.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import secrets
import threading
import uuid
from pathlib import Path
from urllib.parse import quote, unquote, urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from tagger.config import Config
from tagger.errors import TaggerError
from tagger.library import tags
from tagger.library.catalogue import STATUSES, Queue, Sort
from tagger.library.paths import (
    PRIVATE_FILE_MODE,
    is_inside,
    private_dir,
    real_roots,
    special_file_reason,
)
from tagger.results import CorrectionAction
from tagger.review import charts, words
from tagger.review.actions import perform, perform_album
from tagger.review.album import album_key, album_token, album_view
from tagger.review.media import Clips, byte_range
from tagger.review.track import timeline

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
COOKIE = "tagger_review"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
PUBLIC = ("/", "/login", "/static/")
MAX_ROW_ID = 2 ** 63 - 1  # catalogue ids are 64-bit: a larger one names no track
MAX_GENRE_CHARS = 200  # as the catalogue's genre columns
_SUFFIX = re.compile(r"\.[a-z0-9]{1,9}")


def same_secret(given: object, secret: str) -> bool:
    """Whether ``given`` (from the request: any text, or not text at all) is ``secret``,
    compared in constant time."""
    return isinstance(given, str) and secrets.compare_digest(
        given.encode("utf-8", "replace"), secret.encode("utf-8"))


def upload_name(header: str | None) -> tuple[str, str]:
    """(the name to show, the suffix to keep) of an upload's ``X-Filename`` header: its last
    path component without control characters; the suffix only when it is plain."""
    name = os.path.basename(unquote(header or "upload"))
    name = "".join(ch for ch in name if ch.isprintable()) or "upload"
    suffix = os.path.splitext(name)[1].lower()
    return name, suffix if _SUFFIX.fullmatch(suffix) else ""


@dataclasses.dataclass(frozen=True)
class UploadLimits:
    """What "Classify a file" takes in. An upload is in flight from its first byte until its
    result is sent (it waits for the one model meanwhile): ``in_flight`` bounds the bytes of
    all of them together, ``at_once`` their number, ``per_upload`` one file."""

    per_upload: int = 512 * 1024 * 1024
    in_flight: int = 1024 * 1024 * 1024
    at_once: int = 4


class UploadBudget:
    """The uploads in flight across requests, counted against :class:`UploadLimits`."""

    def __init__(self, limits: UploadLimits):
        self.limits = limits
        self._lock = threading.Lock()
        self._uploads = 0
        self._bytes = 0

    def enter(self) -> bool:
        """One more upload, unless ``at_once`` are in flight."""
        with self._lock:
            if self._uploads >= self.limits.at_once:
                return False
            self._uploads += 1
            return True

    def take(self, size: int) -> bool:
        """Room for ``size`` more bytes, unless that would pass ``in_flight``."""
        with self._lock:
            if self._bytes + size > self.limits.in_flight:
                return False
            self._bytes += size
            return True

    def leave(self, taken: int) -> None:
        """An upload is done: its place and the bytes it took are free again."""
        with self._lock:
            self._uploads -= 1
            self._bytes -= taken


def megabytes(size: int) -> str:
    return f"{size / 2 ** 20:g} MB"


def declared_length(request: Request) -> int | None:
    """The request's Content-Length, when it gives a plain one."""
    value = request.headers.get("content-length", "")
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else None


@dataclasses.dataclass
class ReviewSession:
    csrf: str


class Sessions:
    """Sessions in memory: they end with the server (a restart prints a new token)."""

    def __init__(self):
        self._by_id: dict[str, ReviewSession] = {}
        self._lock = threading.Lock()

    def new(self) -> tuple[str, ReviewSession]:
        sid, session = secrets.token_urlsafe(32), ReviewSession(secrets.token_urlsafe(32))
        with self._lock:
            self._by_id[sid] = session
        return sid, session

    def get(self, sid: str | None) -> ReviewSession | None:
        if not sid:
            return None
        with self._lock:
            return self._by_id.get(sid)


class ClassifierHolder:
    """The shipped model, loaded on the first upload (seconds), then kept."""

    def __init__(self, config: Config):
        self.config = config
        self._classifier = None
        self._lock = threading.Lock()

    def classify(self, path: str):
        from tagger.model.classify import Classifier

        with self._lock:
            if self._classifier is None:
                self._classifier = Classifier(self.config)
            return next(iter(self._classifier.classify([path], prepare_threads=1)))


def create_app(config: Config, catalogue, *, token: str, read_only: bool = False,
               password: str | None = None, allowed_hosts: list[str] | None = None,
               upload_limits: UploadLimits = UploadLimits(),
               remember_days: int | None = None) -> Starlette:
    """The ASGI app over ``catalogue``; ``token`` is the secret of the start URL (accepted
    on any page). ``remember_days``: the session cookie lasts that many days (it outlives
    the browser, not the server); None: it ends with the browser.
    ``tags.min_confidence`` must be a number: the caller resolves "auto" (tagger review does,
    with :func:`tagger.service.policy.resolve_threshold`); the app loads no model."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(read_only=read_only, queues=words.QUEUE_TITLES,
                                 colour=charts.colour, status_words=words.status_words,
                                 plural=words.plural, status_names=words.STATUS,
                                 album_url=lambda key: f"/album/{album_token(key)}",
                                 identity_words=words.ALBUM_IDENTITY,
                                 per_track_words=words.PER_TRACK,
                                 not_written_words=words.NOT_WRITTEN)
    sessions = Sessions()
    clips = Clips(config)
    model = ClassifierHolder(config)
    uploads_in_flight = UploadBudget(upload_limits)
    roots = real_roots(config.library.roots)
    threshold = config.tags.min_confidence
    if not isinstance(threshold, (int, float)):
        raise ValueError(f"tags.min_confidence must be a number here, not {threshold!r}")
    templates.env.globals["threshold"] = threshold

    def session_of(request: Request) -> ReviewSession | None:
        return sessions.get(request.cookies.get(COOKIE))

    def page(request: Request, template: str, status_code: int = 200, **context) -> Response:
        session = session_of(request)
        context.setdefault("csrf", session.csrf if session else "")
        return templates.TemplateResponse(request, template, context, status_code=status_code)

    def refused(request: Request, status_code: int, message: str) -> Response:
        return page(request, "error.html", status_code, message=message,
                    login=password is not None and status_code == 403 and
                    session_of(request) is None)

    def start_session(target: str) -> Response:
        sid, _ = sessions.new()
        response = RedirectResponse(target, status_code=303)
        max_age = remember_days * 86400 if remember_days else None
        response.set_cookie(COOKIE, sid, max_age=max_age, httponly=True, samesite="strict",
                            path="/")
        return response

    def track_path(track_id: int) -> tuple[str, int | None] | None:
        """The catalogued path of a track id (and its mtime), None when there is none."""
        if not 0 < track_id <= MAX_ROW_ID:
            return None
        return catalogue.track_location(track_id)

    def readable(path: str) -> bool:
        """Only a regular file inside the library (symlinks resolved) is ever opened."""
        return (os.path.isfile(path) and is_inside(path, roots)
                and special_file_reason(path) is None)

    async def check_csrf(request: Request, *, in_form: bool = True) -> bool:
        """The session's CSRF token in the header, or (``in_form``) in a form field."""
        session = session_of(request)
        if session is None:
            return False
        sent = request.headers.get(CSRF_HEADER)
        if sent is None and in_form and request.headers.get("content-type", "").startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")):
            sent = (await request.form()).get(CSRF_FIELD)
        return same_secret(sent, session.csrf)

    # ------------------------------------------------------------------ pages

    async def home(request: Request) -> Response:
        given = request.query_params.get("token")
        if given is not None:
            if same_secret(given, token):
                return start_session("/queue")
            return refused(request, 403, "That token is not this server's.")
        if session_of(request) is None:
            return refused(request, 403, "Open the address 'tagger review' printed "
                                         "(with its ?token=...).")
        return RedirectResponse("/queue", status_code=303)

    async def login(request: Request) -> Response:
        form = await request.form()
        given = form.get("password")
        if password is None or not same_secret(given, password):
            return refused(request, 403, "Wrong password.")
        return start_session("/queue")

    async def queue_view(request: Request) -> Response:
        q = request.query_params
        try:
            queue = Queue(q.get("q", Queue.LOW.value))
            sort = Sort(q.get("sort", Sort.RECENT.value if queue is Queue.RECENT
                              else Sort.CONFIDENCE.value))
            low = float(q.get("low", threshold))
            if not math.isfinite(low):
                raise ValueError(low)
        except ValueError:
            return refused(request, 400, "Unknown queue, sort or threshold.")
        filters = {k: q.get(k) or None for k in ("folder", "genre", "status")}
        try:
            result = await run_in_threadpool(catalogue.queue_page, queue, low=low,
                                             sort=sort, after=q.get("after"), **filters)
        except ValueError:
            return refused(request, 400, "Bad page cursor.")
        genres = await run_in_threadpool(catalogue.known_genres)
        return page(request, "queue.html", queue=queue, sort=sort, low=low, page=result,
                    filters=filters, genres=genres, statuses=STATUSES, sorts=list(Sort),
                    base_query={k: v for k, v in {"q": queue.value, "sort": sort.value,
                                                  "low": q.get("low"), **filters}.items() if v})

    async def track_view(request: Request) -> Response:
        found = track_path(request.path_params["track_id"])
        if found is None:
            return refused(request, 404, "No such track in the catalogue.")
        path = found[0]
        record = await run_in_threadpool(catalogue.track, path)
        if record is None:
            return refused(request, 404, "No such track in the catalogue.")
        file_genres, file_error = [], None
        if readable(path):
            try:
                file_genres = await run_in_threadpool(tags.read_genres, path)
            except TaggerError as exc:
                file_error = str(exc)
        else:
            file_error = "not read: missing, or not inside the library"
        corrections = []
        if hasattr(catalogue, "corrections"):
            corrections = await run_in_threadpool(catalogue.corrections, path)
        view = timeline(record, config)
        prediction = record.prediction
        vocabulary = list(prediction.model.vocabulary) if prediction else []
        known = list(dict.fromkeys(vocabulary + await run_in_threadpool(catalogue.known_genres)))
        svg = None
        if view is not None:
            svg = charts.taggram(view.genres, view.values, [s.winner for s in view.segments],
                                 vocabulary)
        return page(request, "track.html", record=record, prediction=prediction,
                    timeline=view, taggram=svg, file_genres=file_genres,
                    file_error=file_error, corrections=corrections, known_genres=known,
                    playable=readable(path), message=request.query_params.get("done"),
                    failed=request.query_params.get("failed"), vocabulary=vocabulary,
                    name=os.path.basename(path))

    async def audio(request: Request) -> Response:
        track_id = request.path_params["track_id"]
        found = track_path(track_id)
        if found is None or not readable(found[0]):
            return Response("not found", status_code=404)
        try:
            data, _ = await run_in_threadpool(clips.window, track_id, *found)
        except TaggerError as exc:
            return Response(f"cannot decode: {exc}", status_code=422)
        size = len(data)
        headers = {"Accept-Ranges": "bytes", "Content-Type": "audio/wav",
                   "Cache-Control": "private, max-age=300"}
        try:
            wanted = byte_range(request.headers.get("range"), size)
        except ValueError:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
        if wanted is None:
            return Response(data, headers=headers)
        first, last = wanted
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        return Response(data[first:last + 1], status_code=206, headers=headers)

    async def write_refusal(request: Request) -> Response | None:
        """Why a request that would write is refused (read-only, a bad CSRF token), or None."""
        if read_only:
            return refused(request, 403, "This review server is read-only (--read-only).")
        if not await check_csrf(request):
            return refused(request, 403, "The form is stale or forged (CSRF check failed); "
                                         "reload the page.")
        return None

    def typed_genre(request: Request, form) -> tuple[str | None, Response | None]:
        """The genre the form typed (None: none), or why it is refused (too long)."""
        genre = form.get("genre") if isinstance(form.get("genre"), str) else None
        if genre is not None and len(genre.strip()) > MAX_GENRE_CHARS:
            return None, refused(request, 400,
                                 f"A genre is at most {MAX_GENRE_CHARS} characters.")
        return genre, None

    async def act(request: Request) -> Response:
        refusal = await write_refusal(request)
        if refusal is not None:
            return refusal
        track_id = request.path_params["track_id"]
        found = track_path(track_id)
        if found is None:
            return refused(request, 404, "No such track in the catalogue.")
        form = await request.form()
        try:
            action = CorrectionAction(form.get("action"))
        except ValueError:
            return refused(request, 400, "Unknown action.")
        genre, refusal = typed_genre(request, form)
        if refusal is not None:
            return refusal
        if not is_inside(found[0], roots):
            return refused(request, 403, "That file is not inside the library.")
        outcome = await run_in_threadpool(perform, config, found[0], action, genre)
        key = "done" if outcome.ok else "failed"
        return RedirectResponse(f"/track/{track_id}?{urlencode({key: outcome.message})}",
                                status_code=303)

    async def album_of(request: Request):
        """The album the path's token names, or the 404 page."""
        key = album_key(request.path_params["token"])
        view = None if key is None else await run_in_threadpool(album_view, catalogue, key)
        if view is None:
            return None, refused(request, 404, "No such album in the catalogue.")
        return view, None

    async def album_page(request: Request) -> Response:
        view, refusal = await album_of(request)
        if refusal is not None:
            return refusal
        return page(request, "album.html", album=view, known_genres=await run_in_threadpool(
                        catalogue.known_genres), message=request.query_params.get("done"),
                    failed=request.query_params.get("failed"))

    async def album_act(request: Request) -> Response:
        """Set one genre (the one typed, or the album's own: accept) on every track."""
        refusal = await write_refusal(request)
        if refusal is not None:
            return refusal
        view, refusal = await album_of(request)
        if refusal is not None:
            return refusal
        token = request.path_params["token"]
        form = await request.form()
        action = form.get("action")
        if action == CorrectionAction.ACCEPT.value:
            genre = view.decision.genre if view.decision else None
            if not genre:
                return refused(request, 400, "This album has no genre of its own to accept.")
        elif action == CorrectionAction.SET_GENRE.value:
            genre, refusal = typed_genre(request, form)
            if refusal is not None:
                return refusal
            genre = genre or ""
        else:
            return refused(request, 400, "Unknown action.")
        paths = [p for p in view.paths if is_inside(p, roots)]
        outside = [(p, "not inside the library") for p in view.paths if p not in paths]
        outcome = await run_in_threadpool(perform_album, config, paths, genre)
        refusals = outside + list(outcome.refused)
        query = {"done": f"{genre.strip()} set on {words.plural(outcome.written, 'track')}"}
        if refusals:
            query["failed"] = "; ".join(f"{os.path.basename(p)}: {why}" for p, why in refusals)
        return RedirectResponse(f"/album/{token}?{urlencode(query)}", status_code=303)

    async def classify_page(request: Request) -> Response:
        return page(request, "classify.html")

    async def classify_upload(request: Request) -> Response:
        # the body is the file itself: the CSRF token can only be in the header
        if not await check_csrf(request, in_form=False):
            return refused(request, 403, "CSRF check failed; reload the page.")
        name, suffix = upload_name(request.headers.get("x-filename"))
        limits = upload_limits
        too_large = PlainTextResponse(
            f"{name} is larger than {megabytes(limits.per_upload)}, the most one upload may "
            "be.", status_code=413)
        busy = PlainTextResponse(
            f"The server is busy with other uploads (at most {limits.at_once} at once, "
            f"{megabytes(limits.in_flight)} in all); try {name} again in a moment.",
            status_code=503, headers={"Retry-After": "10"})
        declared = declared_length(request)
        if declared is not None and declared > limits.per_upload:
            return too_large
        uploads = private_dir(config.state_path / "review-uploads", "upload folder")
        target = uploads / f"{uuid.uuid4().hex}{suffix}"
        if not uploads_in_flight.enter():
            return busy
        size = taken = 0
        try:
            if declared is not None:  # the whole file's room, before its first byte
                if not uploads_in_flight.take(declared):
                    return busy
                taken = declared
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                         PRIVATE_FILE_MODE)
            with os.fdopen(fd, "wb") as out:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limits.per_upload:
                        return too_large
                    if size > taken:  # no length given, or more than it said
                        if not uploads_in_flight.take(size - taken):
                            return busy
                        taken = size
                    out.write(chunk)
            result = await run_in_threadpool(model.classify, str(target))
        finally:
            target.unlink(missing_ok=True)
            uploads_in_flight.leave(taken)
        svg = None
        if result.ok and result.segments:
            genres = list(result.model.vocabulary)
            values = [[seg.genre_scores.get(g, 0.0) for seg in result.segments] for g in genres]
            order = sorted(range(len(genres)), key=lambda j: -sum(values[j]))[:8]
            svg = charts.taggram([genres[j] for j in order], [values[j] for j in order],
                                 [s.genre for s in result.segments], genres)
        # the reason names the upload as the user did, not by its temporary path here
        error = result.error.replace(str(target), name) if result.error else None
        return page(request, "classified.html", result=result, name=name, taggram=svg,
                    error=error)

    async def stats_view(request: Request) -> Response:
        stats = await run_in_threadpool(catalogue.stats)
        buckets = stats.confidence.buckets if stats.confidence else ()
        genres = await run_in_threadpool(catalogue.known_genres)
        return page(request, "stats.html", stats=stats,
                    genre_chart=charts.bars(list(stats.genres), genres),
                    confidence_chart=charts.histogram(buckets, threshold), threshold=threshold)

    # ------------------------------------------------------------------ the gate

    def gate(request: Request) -> Response | None:
        """Every request but the start URL, the login and the static files needs a session;
        the token opens one on any page (a deep link), which then loads without it.
        Read-only refuses every POST that could write (classifying an upload writes nothing
        but its own temporary file)."""
        path = request.url.path
        given = request.query_params.get("token")
        if given is not None and path != "/" and request.method in ("GET", "HEAD"):
            if not same_secret(given, token):
                return refused(request, 403, "That token is not this server's.")
            rest = urlencode([(k, v) for k, v in request.query_params.multi_items()
                              if k != "token"])
            # "/" + ...: never "//host", which a browser would take for another site
            target = quote("/" + path.lstrip("/\\"))
            return start_session(target + (f"?{rest}" if rest else ""))
        public = path in PUBLIC[:2] or path.startswith(PUBLIC[2])
        if not public and session_of(request) is None:
            return refused(request, 403, "Open the address 'tagger review' printed "
                                         "(with its ?token=...).")
        if request.method not in ("GET", "HEAD") and read_only and path not in (
                "/login", "/classify"):
            return refused(request, 403, "This review server is read-only (--read-only).")
        return None

    routes = [
        Route("/", home),
        Route("/login", login, methods=["POST"]),
        Route("/queue", queue_view),
        Route("/track/{track_id:int}", track_view),
        Route("/track/{track_id:int}/audio.wav", audio),
        Route("/track/{track_id:int}/act", act, methods=["POST"]),
        Route("/album/{token}", album_page),
        Route("/album/{token}/act", album_act, methods=["POST"]),
        Route("/classify", classify_page),
        Route("/classify", classify_upload, methods=["POST"]),
        Route("/stats", stats_view),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    return Starlette(routes=routes, middleware=[
        Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or ["*"]),
        Middleware(Gate, check=gate)])


class Gate:
    """ASGI middleware: ``check(request)`` returns a response to send instead of the
    route's, or None to let the request through."""

    def __init__(self, app, check):
        self.app, self.check = app, check

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            response = self.check(Request(scope, receive))
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
