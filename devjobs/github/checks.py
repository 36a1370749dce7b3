"""GitHub check runs for jobs: what to send (pure) and a small client that sends it.

Public API, pure (no I/O, no clock, nothing from devjobs.kube/runner/controller):
    JobReport(source, job, commit, phase, reason="", exit_code=None, started=None,
              finished=None, message="", log_tail="")      the input, one job's state
    check_run_name(source, job) -> "devjobs/<source>/<job>"
    parse_check_run_name(name) -> (source, job) | None
    status_and_conclusion(report) -> (status, conclusion | None)
    check_run_requests(report, *, repo_files=frozenset(), secrets=(), details_url=None,
                       workspace=None, now=None, max_annotations=MAX_ANNOTATIONS_TOTAL)
        -> list[dict]   the first request body, then one body per further 50 annotations
    parse_annotations(log, *, repo_files, workspace=None, secrets=(), title="")
        -> list[dict]   annotations from `path:line[:col]: message` lines
    log_text(log, *, secrets=(), limit=MAX_TEXT) -> str      the Markdown of `output.text`
    mask(text, secrets) -> str                              every secret value as `***`
    plain(text) -> str              ANSI escapes and control characters removed
Client:
    CheckRuns(auth, *, api_url, http=None, ...)
        .create(repo, body) -> int                       POST, 201: the check run's id
        .update(repo, check_run_id, body) -> None        PATCH, 200
        .publish(repo, bodies, *, check_run_id=None, on_created=None) -> int
                                 create (or update) with the first body, then the rest

Why pure payloads: the controller decides when to post and keeps what it posted in the
cluster; this module only says what a job looks like on a pull request, so it can be
tested without either. `phase` uses the runner's vocabulary (`Pending`, `Running`,
`Succeeded`, `Failed`, `Cancelled`; `DeadlineExceeded` as the reason of a failure is
`timed_out`) so wiring is `JobReport(phase=state.phase.value, ...)`.

What a log may do to the page: nothing. Text is stripped of ANSI escapes, control
characters and bidi overrides, secrets are masked (before and after stripping, so an
escape sequence inside a secret does not hide it), the log goes inside a code fence
that no line of it can close, and words from the job (reason, message) are
backslash-escaped in the Markdown summary. Sizes: `summary` and `text` are kept within
65,535 characters and 65,535 UTF-8 bytes (GitHub documents characters; bytes are the
safe reading), annotations within 50 per request, `message` within 64 KB, `title`
within 255 characters.

The client retries through `devjobs.github.http` (5xx, rate limits, bounded; a longer
wait raises `RetryLater` with it). A 401 means the installation token was revoked or
expired early: it is dropped and the request made once more with a fresh one. A create
whose answer is lost can, after a retry, leave a second run of the same name; GitHub
shows the newest run of a name, and `external_id` lets the controller find either.
"""

from __future__ import annotations

import posixpath
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from devjobs.errors import DevjobsError
from devjobs.github.app import TokenSource
from devjobs.github.http import GitHubError, GitHubHTTP

RunPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Cancelled"]
CheckStatus = Literal["queued", "in_progress", "completed"]
Conclusion = Literal["success", "failure", "cancelled", "timed_out"]

MAX_TEXT = 65535
"""GitHub's limit for `output.summary` and `output.text`."""
MAX_ANNOTATIONS_PER_REQUEST = 50
MAX_ANNOTATIONS_TOTAL = 500
"""Annotations beyond this many are counted in the summary but not sent: 10 requests."""
MAX_ANNOTATION_MESSAGE = 4000
"""Characters of one annotation message: far within GitHub's 64 KB, long enough for a
compiler's line."""
MAX_TITLE = 255
PHASES: frozenset[str] = frozenset({"Pending", "Running", "Succeeded", "Failed", "Cancelled"})
_SHA = re.compile(r"^[0-9a-f]{40}$")
_REPO = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]+$")

REASONS: Mapping[str, str] = {
    "Pending": "the job is waiting for its pod to start",
    "Running": "the job's pod is running",
    "Succeeded": "every container of the job exited with code 0",
    "Failed": "the job's command failed",
    "BackoffLimitExceeded": "the job failed on every attempt it was allowed (its retries)",
    "DeadlineExceeded": "the job ran longer than its timeoutSeconds and was stopped",
    "Cancelled": "the job was stopped before it finished (a newer commit, or it was deleted)",
}
"""The runner's reasons in words, for the summary."""


@dataclass(frozen=True)
class JobReport:
    """What the summary needs of one job: the runner's JobState plus its log tail."""

    source: str
    job: str
    commit: str
    phase: RunPhase
    reason: str = ""
    exit_code: int | None = None
    started: datetime | None = None
    finished: datetime | None = None
    message: str = ""
    log_tail: str = ""

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise DevjobsError("check run", f"phase {self.phase!r} is not one of {sorted(PHASES)}")
        if not _SHA.match(self.commit):
            raise DevjobsError("check run", f"{self.commit!r} is not a full lower-case commit SHA")

    @property
    def timed_out(self) -> bool:
        return self.phase == "Failed" and self.reason == "DeadlineExceeded"


# --- names and states --------------------------------------------------------------------


def check_run_name(source: str, job: str) -> str:
    """The same name as the commit status context, so both read alike on a PR."""
    return f"devjobs/{source}/{job}"


def parse_check_run_name(name: str) -> tuple[str, str] | None:
    """(source, job) of a devjobs check run name, None for any other name."""
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != "devjobs" or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def status_and_conclusion(report: JobReport) -> tuple[CheckStatus, Conclusion | None]:
    """Pending is `queued` (the Job exists, its pod does not run yet)."""
    if report.phase == "Pending":
        return "queued", None
    if report.phase == "Running":
        return "in_progress", None
    if report.phase == "Succeeded":
        return "completed", "success"
    if report.phase == "Cancelled":
        return "completed", "cancelled"
    return "completed", "timed_out" if report.timed_out else "failure"


# --- text hygiene ------------------------------------------------------------------------

_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: titles, hyperlinks
    r"|\x1b[P^_X][^\x1b]*(?:\x1b\\)?"  # DCS, PM, APC, SOS
    r"|\x1b[@-Z\\-_]?"  # other two-byte escapes, or a lone ESC
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def plain(text: str) -> str:
    """Text a terminal would show, as characters: ANSI escapes and control characters
    (NUL included) removed, bidi overrides removed (they can make a line read as another),
    `\\r\\n` made `\\n`, a progress line's `\\r` rewrites kept as the last one, and
    unpaired surrogates replaced so the JSON is valid UTF-8."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    text = _ANSI.sub("", text.replace("\r\n", "\n"))
    lines = [_last_rewrite(line) for line in text.split("\n")]
    return _CONTROL.sub("", "\n".join(lines))


def _last_rewrite(line: str) -> str:
    """What is left of a line a program rewrote with `\r`: its last non-empty version."""
    if "\r" not in line:
        return line
    return next((part for part in reversed(line.split("\r")) if part), "")


def mask(text: str, secrets: Iterable[str]) -> str:
    """Every occurrence of every non-empty secret as `***` (longest first, so a secret
    that contains another is masked whole)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _clean(text: str, secrets: Iterable[str]) -> str:
    values = [s for s in secrets if s]
    values += [plain(s) for s in values]
    return mask(plain(mask(text, values)), values)


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~&@:=\"'$^%])")


def _md(text: str) -> str:
    """Words from a job as literal Markdown text on one line: every character that could
    start markup is backslash-escaped (CommonMark allows it for all ASCII punctuation)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _fits(text: str, limit: int) -> bool:
    return len(text) <= limit and len(text.encode()) <= limit


def _shorten(text: str, limit: int) -> str:
    """At most `limit` characters and UTF-8 bytes, ending with `…` when cut."""
    if _fits(text, limit):
        return text
    cut = text[: limit - 1]
    while (excess := len((cut + "…").encode()) - limit) > 0:
        cut = cut[: len(cut) - max(1, excess // 4)]
    return cut + "…"


# --- the log as output.text --------------------------------------------------------------

_FENCE_LIKE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def log_text(log: str, *, secrets: Iterable[str] = (), limit: int = MAX_TEXT) -> str:
    """The log tail as Markdown that shows it verbatim: cleaned and masked, inside a
    ``` fence; a line that could open or close a fence is indented by four spaces
    (inside a fence, no such line closes it). When it is too long, whole lines are
    dropped from the start and a note before the fence says how many."""
    cleaned = _clean(log, secrets).rstrip("\n")
    if not cleaned:
        return "*The job wrote no log.*"
    lines = ["    " + line if _FENCE_LIKE.match(line) else line for line in cleaned.split("\n")]
    head, tail = "```text\n", "\n```"
    total_chars = sum(len(line) + 1 for line in lines)

    def note(dropped: int, chars: int, partial: bool) -> str:
        what = f"{dropped:,} earlier line{'s' if dropped != 1 else ''} ({chars:,} characters)"
        if partial:
            what += " and the start of the first line shown"
        return f"*Cut to fit GitHub's {MAX_TEXT:,}-character limit: {what} not shown.*\n\n"

    budget = limit - len(head) - len(tail)
    if _fits("\n".join(lines), budget):
        return head + "\n".join(lines) + tail
    budget -= len(note(10**9, 10**12, True).encode())
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        cost = len(line.encode()) + (1 if kept else 0)
        if size + cost > budget:
            break
        kept.append(line)
        size += cost
    kept.reverse()
    partial = False
    if not kept:  # a single last line longer than the whole budget: keep its end
        last = lines[-1]
        piece = last[-budget:]
        while (excess := len(piece.encode()) - budget) > 0:
            piece = piece[max(1, excess // 4) :]
        kept, partial = [piece], True
    dropped = len(lines) - len(kept) + (1 if partial else 0)
    shown_chars = sum(len(line) + 1 for line in kept)
    return note(dropped, total_chars - shown_chars, partial) + head + "\n".join(kept) + tail


# --- annotations -------------------------------------------------------------------------

_LOCATION = re.compile(
    r"(?P<path>[^\s:()\[\]\"']+):(?P<line>\d{1,9})(?::(?P<col>\d{1,9}))?:\s*(?P<message>\S.*)$"
)
"""`path:line[:col]: message`, tried at the start of a line and after each run of
spaces or brackets, so a prefix (a log level, a timestamp) does not hide it."""
_STARTS = re.compile(r"[\s(\[\"']+")
_WARNING = re.compile(r"^\W*(warning|warn)\b", re.IGNORECASE)
_NOTICE = re.compile(r"^\W*(note|notice|info)\b", re.IGNORECASE)


def _repo_path(path: str, repo_files: AbstractSet[str], workspace: str | None) -> str | None:
    """`path` as a file of the repository, or None: relative paths and paths under the
    workspace are normalised, `..` out of the repository and other absolute paths are
    not files of it."""
    if workspace:
        root = workspace.rstrip("/") + "/"
        if path.startswith(root):
            path = path[len(root) :]
    if path.startswith("/"):
        return None
    normal = posixpath.normpath(path)
    if normal.startswith("../") or normal in (".", ".."):
        return None
    return normal if normal in repo_files else None


def _locate(
    line: str, repo_files: AbstractSet[str], workspace: str | None
) -> tuple[str, re.Match[str]] | None:
    """The first `path:line[:col]: message` of the line whose path is a repository file."""
    if ":" not in line:
        return None
    for start in [0, *(m.end() for m in _STARTS.finditer(line))]:
        match = _LOCATION.match(line, start)
        if match is None or int(match["line"]) < 1 or "***" in match["path"]:
            continue
        path = _repo_path(match["path"], repo_files, workspace)
        if path is not None:
            return path, match
    return None


def parse_annotations(
    log: str,
    *,
    repo_files: AbstractSet[str],
    workspace: str | None = None,
    secrets: Iterable[str] = (),
    title: str = "",
) -> list[dict[str, Any]]:
    """One annotation per distinct `path:line[:col]: message` line whose path is a file
    of the repository at that commit (`repo_files`, repository-relative). A message that
    starts with `warning` is a warning, `note`/`info` a notice, anything else a failure."""
    values = list(secrets)
    found: list[dict[str, Any]] = []
    seen: set[tuple[str, int, int | None, str]] = set()
    for line in _clean(log, values).split("\n"):
        located = _locate(line, repo_files, workspace)
        if located is None:
            continue
        path, match = located
        number = int(match["line"])
        column = int(match["col"]) if match["col"] else None
        message = _shorten(match["message"].strip(), MAX_ANNOTATION_MESSAGE)
        key = (path, number, column, message)
        if key in seen:
            continue
        seen.add(key)
        level = (
            "warning"
            if _WARNING.match(message)
            else "notice"
            if _NOTICE.match(message)
            else "failure"
        )
        annotation: dict[str, Any] = {
            "path": path,
            "start_line": number,
            "end_line": number,
            "annotation_level": level,
            "message": message,
        }
        if column is not None and column >= 1:
            annotation["start_column"] = annotation["end_column"] = column
        if title:
            annotation["title"] = _shorten(mask(title, values), MAX_TITLE)
        found.append(annotation)
    return found


# --- the requests ------------------------------------------------------------------------


def _time(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _duration(seconds: int) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _title(report: JobReport, duration: str | None) -> str:
    after = f" after {duration}" if duration else ""
    if report.phase == "Pending":
        return "Queued"
    if report.phase == "Running":
        return "Running"
    if report.phase == "Succeeded":
        return f"Succeeded in {duration}" if duration else "Succeeded"
    if report.phase == "Cancelled":
        return f"Cancelled{after}"
    if report.timed_out:
        return f"Timed out{after}"
    code = f": exit code {report.exit_code}" if report.exit_code is not None else ""
    return f"Failed{after}{code}"


def _summary(
    report: JobReport, duration: str | None, secrets: Sequence[str], annotations: tuple[int, int]
) -> str:
    rows = [
        f"**{_md(mask(_title(report, duration), secrets))}**",
        "",
        "| | |",
        "| --- | --- |",
        f"| State | {_md(report.phase)} |",
        f"| Duration | {_md(duration) if duration else '—'} |",
        f"| Exit code | {report.exit_code if report.exit_code is not None else '—'} |",
    ]
    reason = report.reason or report.phase
    words = REASONS.get(reason, "")
    said = f"{_md(_clean(reason, secrets))}" + (f": {_md(words)}" if words else "")
    rows.append(f"| Reason | {said} |")
    rows.append(f"| Commit | {report.commit[:12]} |")
    message = _clean(report.message, secrets).strip()
    if message:
        rows += ["", _md(_shorten(" ".join(message.split()), 2000))]
    found, sent = annotations
    if found:
        more = f" ({sent:,} shown as annotations)" if sent < found else ""
        rows += [
            "",
            f"{found:,} log line{'s' if found != 1 else ''} name files of this commit{more}.",
        ]
    return _shorten("\n".join(rows), MAX_TEXT)


def check_run_requests(
    report: JobReport,
    *,
    repo_files: AbstractSet[str] = frozenset(),
    secrets: Iterable[str] = (),
    details_url: str | None = None,
    workspace: str | None = None,
    now: datetime | None = None,
    max_annotations: int = MAX_ANNOTATIONS_TOTAL,
) -> list[dict[str, Any]]:
    """The bodies to send for `report`: the first creates the run (or, without
    `head_sha`, updates it: `CheckRuns.update` drops it) and carries up to 50
    annotations; each further body carries the next 50 as an update. `now` is the
    `completed_at` of a finished job whose Job recorded no finish time."""
    values = [s for s in secrets if s]
    status, conclusion = status_and_conclusion(report)
    end = report.finished or (now if conclusion else None)
    duration = None
    if report.started is not None and end is not None:
        duration = _duration(max(0, int((end - report.started).total_seconds())))
    annotations: list[dict[str, Any]] = []
    if report.phase == "Failed":
        annotations = parse_annotations(
            report.log_tail,
            repo_files=repo_files,
            workspace=workspace,
            secrets=values,
            title=check_run_name(report.source, report.job),
        )
    found = len(annotations)
    annotations = annotations[: max(0, max_annotations)]
    output: dict[str, Any] = {
        "title": _shorten(mask(_title(report, duration), values), MAX_TITLE),
        "summary": _summary(report, duration, values, (found, len(annotations))),
    }
    if report.phase != "Pending":
        output["text"] = log_text(report.log_tail, secrets=values)
    first: dict[str, Any] = {
        "name": check_run_name(report.source, report.job),
        "head_sha": report.commit,
        "status": status,
        "external_id": mask(f"{report.source}/{report.job}@{report.commit}", values),
    }
    if conclusion is not None:
        if end is None:
            end = report.started
        if end is None:
            raise DevjobsError(
                "check run", f"{first['name']}: a finished job needs finished, started or now"
            )
        first["conclusion"] = conclusion
        first["completed_at"] = _time(end)
    if report.started is not None and report.phase != "Pending":
        started = report.started if end is None or report.started <= end else end
        first["started_at"] = _time(started)
    if details_url:
        url = mask(details_url, values)
        if re.match(r"^https?://\S+$", url):
            first["details_url"] = url
    batches = [
        annotations[i : i + MAX_ANNOTATIONS_PER_REQUEST]
        for i in range(0, len(annotations), MAX_ANNOTATIONS_PER_REQUEST)
    ] or [[]]
    bodies = [first | {"output": output | ({"annotations": batches[0]} if batches[0] else {})}]
    bodies += [{"output": output | {"annotations": batch}} for batch in batches[1:]]
    return bodies


# --- the client --------------------------------------------------------------------------


class CheckRuns:
    """Creates and updates check runs as one installation of the App."""

    def __init__(
        self,
        auth: TokenSource,
        *,
        api_url: str = "https://api.github.com",
        http: GitHubHTTP | None = None,
        timeout: float = 10.0,
        max_retries: int = 4,
        max_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._auth = auth
        self._http = http or GitHubHTTP(
            api_url=api_url,
            timeout=timeout,
            max_retries=max_retries,
            max_wait=max_wait,
            sleep=sleep,
            clock=clock,
        )

    def __repr__(self) -> str:
        return f"CheckRuns(api_url={self._http.api_url!r})"

    def create(self, repo: str, body: Mapping[str, Any]) -> int:
        """POST the check run; its id (keep it: updates need it)."""
        _check_repo(repo)
        if "head_sha" not in body or "name" not in body:
            raise DevjobsError("check run", "a new check run needs name and head_sha")
        response = self._send("POST", f"/repos/{repo}/check-runs", body)
        run_id = response.body.get("id") if isinstance(response.body, dict) else None
        if response.status != 201 or not isinstance(run_id, int):
            raise GitHubError(
                "github", f"POST /repos/{repo}/check-runs: answered {response.status} without an id"
            )
        return run_id

    def update(self, repo: str, check_run_id: int, body: Mapping[str, Any]) -> None:
        """PATCH the check run (`head_sha`, which an update may not carry, is dropped)."""
        _check_repo(repo)
        sent = {k: v for k, v in body.items() if k != "head_sha"}
        self._send("PATCH", f"/repos/{repo}/check-runs/{int(check_run_id)}", sent)

    def publish(
        self,
        repo: str,
        bodies: Sequence[Mapping[str, Any]],
        *,
        check_run_id: int | None = None,
        on_created: Callable[[int], None] | None = None,
    ) -> int:
        """Send `check_run_requests`' bodies: create the run (or update `check_run_id`)
        with the first, then the further annotation batches. `on_created` hears the new
        id before the batches go, so a caller can keep it even if one of them fails."""
        if not bodies:
            raise DevjobsError("check run", "nothing to publish")
        if check_run_id is None:
            check_run_id = self.create(repo, bodies[0])
            if on_created is not None:
                on_created(check_run_id)
        else:
            self.update(repo, check_run_id, bodies[0])
        for body in bodies[1:]:
            self.update(repo, check_run_id, body)
        return check_run_id

    def _send(self, method: str, path: str, body: Mapping[str, Any]) -> Any:
        token = self._auth.token()
        try:
            return self._http.request(method, path, token=token, body=body, hint=_hint)
        except GitHubError as err:
            if err.status != 401:
                raise
        self._auth.invalidate(token)
        return self._http.request(method, path, token=self._auth.token(), body=body, hint=_hint)


def _check_repo(repo: str) -> None:
    if not _REPO.match(repo):
        raise DevjobsError("check run", f"{repo!r} is not an owner/name repository")


def _hint(status: int) -> str:
    if status == 401:
        return " (the installation token was refused even after renewing it)"
    if status == 403:
        return (
            " (check runs need a GitHub App installation token with the `checks: write` permission)"
        )
    if status == 404:
        return " (the App is not installed on this repository, or the check run is unknown)"
    if status == 422:
        return " (GitHub refused the check run's fields)"
    return ""
