"""Meaning-level cassette mutations: craft edge cases by wamid and media id, never by bytes.

`OPERATIONS` lists every mutation once, as an `Operation`: its name, its plan
(`plans.py`, pure over a `Tape`) and its typed parameters. From each entry come both the
public function here (`duplicate(store, name, event, times=1, gap_s=0.0, *, out=None,
in_place=False) -> MutationResult`, …) and the `pseudowa cassette mutate` subcommand
(`proxy/cli/mutate.py`), so adding a mutation is one `operation(...)` statement below.

Applying an operation reads cassette `name`, plans (every mistake raises `MutationError`
before anything is written), then writes a new cassette `out` (a copy of `name`, then
changed; source "mutated") or, with `in_place`, `name` itself, and appends the operation
with its arguments to the history. Events are addressed as `store.events(name)` lists
them: by index (`3`, `"3"`, `"#3"`) or by wamid (see `tape.py`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

from pseudowa.proxy.cassette.operations import Operation
from pseudowa.proxy.cassette.operations import Param
from pseudowa.proxy.cassette.operations import Variant
from pseudowa.proxy.cassette.plans import CassetteMedia
from pseudowa.proxy.cassette.plans import Change
from pseudowa.proxy.cassette.plans import plan_add_event
from pseudowa.proxy.cassette.plans import plan_delay
from pseudowa.proxy.cassette.plans import plan_drop
from pseudowa.proxy.cassette.plans import plan_duplicate
from pseudowa.proxy.cassette.plans import plan_fail_status
from pseudowa.proxy.cassette.plans import plan_move
from pseudowa.proxy.cassette.plans import plan_pseudonymize
from pseudowa.proxy.cassette.plans import plan_set_field
from pseudowa.proxy.cassette.plans import plan_shift_timestamps
from pseudowa.proxy.cassette.plans import plan_signature
from pseudowa.proxy.cassette.plans import plan_swap_media_file
from pseudowa.proxy.cassette.tape import EventRef  # noqa: F401 (the public signatures name it)
from pseudowa.proxy.cassette.tape import Tape
from pseudowa.proxy.cassette.tape import index_exchange
from pseudowa.proxy.contract.fields import MEDIA_KINDS
from pseudowa.proxy.contract.surgery import DEFAULT_FAIL_CODE
from pseudowa.proxy.errors import MutationError
from pseudowa.storage.errors import CassetteExists
from pseudowa.storage.errors import StoreError
from pseudowa.storage.records import Source
from pseudowa.storage.store import CassetteStore
from pseudowa.storage.store import validate_name


def apply(
    op: Operation,
    store: CassetteStore,
    name: str,
    values: Mapping[str, Any],
    *,
    out: str | None = None,
    in_place: bool = False,
) -> MutationResult:
    """Apply `op` to cassette `name` with `values` by parameter name (extras: message
    fields): what the public functions and the CLI both call."""
    call = op.prepare(values)

    def plan(tape: Tape) -> Change:
        if op.uses_media:
            return op.plan(tape, media=_media_of(store, tape.name), **call.values)
        return op.plan(tape, **call.values)

    return _apply(store, name, out, in_place, op.name, call.arguments, plan)


def _media_of(store: CassetteStore, name: str) -> CassetteMedia:
    """What plans may know of the cassette's linked media, read from the store."""
    links = {link.media_id: link for link in store.list_media(name)}
    return CassetteMedia(list(links), links.get)


# -- the store shell -----------------------------------------------------------------------


@dataclass(frozen=True)
class MutationResult:
    """What a mutation did and where it wrote."""

    cassette: str  # the cassette written
    source: str  # the cassette read
    operation: str
    summary: str
    arguments: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def in_place(self) -> bool:
        return self.cassette == self.source

    def line(self) -> str:
        """One line for the CLI: what changed and where it was written."""
        where = (
            f"cassette {self.cassette} (in place)"
            if self.in_place
            else f"new cassette {self.cassette} (from {self.source})"
        )
        return f"{self.summary}; wrote {where}"


def _target_name(store: CassetteStore, name: str, out: str | None, in_place: bool) -> str:
    if in_place and out:
        raise MutationError("give out (a new cassette) or in_place, not both")
    if not in_place and not out:
        raise MutationError("give out (a new cassette to write) or in_place=True")
    store.get_cassette(name)  # CassetteNotFound names the closest ones
    if in_place:
        return name
    assert out is not None
    validate_name(out)
    if store.exists(out):
        raise CassetteExists(out)
    return out


def _apply(
    store: CassetteStore,
    name: str,
    out: str | None,
    in_place: bool,
    operation: str,
    arguments: dict[str, Any],
    plan: Callable[[Tape], Change],
) -> MutationResult:
    """Plan against the source (errors raise before any write), then write and log."""
    target = _target_name(store, name, out, in_place)
    tape = Tape(name, list(store.interactions(name)), store.events(name))
    change = plan(tape)
    created = False
    try:
        if target != name:
            store.copy_cassette(name, target, source=Source.MUTATED.value)
            created = True
        else:
            store.update_cassette(name, source=Source.MUTATED.value)
        for media_id, data, mime in change.media:
            blob = store.put_media(data, mime)
            store.link_media(target, media_id, blob.sha256, mime)
        if change.exchanges is not None:
            store.replace_interactions(target, [(x, index_exchange(x)) for x in change.exchanges])
        logged = {k: v for k, v in arguments.items() if v is not None}
        store.add_history(target, operation, {**logged, **_jsonable(change.details)})
    except BaseException:
        if created:
            try:
                store.delete_cassette(target)
            except StoreError:
                pass
        raise
    return MutationResult(target, name, operation, change.summary, arguments, change.details)


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in details.items() if v is not None}


# -- the registry --------------------------------------------------------------------------

MutationFunction = Callable[..., MutationResult]
OPERATIONS: dict[str, Operation] = {}


def operation(
    name: str,
    plan: Callable[..., Change],
    *params: Param,
    doc: str,
    help: str,
    function_name: str | None = None,
    **options: Any,
) -> MutationFunction:
    """Register an operation and return its public function (named `function_name`, by
    default the name with `-` as `_`)."""
    op = Operation(
        name,
        function_name or name.replace("-", "_"),
        plan,
        params,
        inspect.cleandoc(doc),
        inspect.cleandoc(help),
        **options,
    )
    if op.name in OPERATIONS:
        raise ValueError(f"operation {op.name!r} is registered twice")
    OPERATIONS[op.name] = op
    return _public_function(op)


def _public_function(op: Operation) -> MutationFunction:
    """`op` as a Python function with the operation's own signature (and type hints)."""

    def mutation(*args: Any, **kwargs: Any) -> MutationResult:
        bound = op.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        store, name = values.pop("store"), values.pop("name")
        out, in_place = values.pop("out"), values.pop("in_place")
        values.update(values.pop("fields", {}))
        return apply(op, store, name, values, out=out, in_place=in_place)

    mutation.__name__ = mutation.__qualname__ = op.function_name
    mutation.__doc__ = op.doc
    mutation.__module__ = __name__
    mutation.__annotations__ = {
        **{p.name: p.annotation for p in op.signature.parameters.values()},
        "return": op.signature.return_annotation,
    }
    setattr(mutation, "__signature__", op.signature)
    return mutation


def _whole_seconds(seconds: float) -> int:
    if not float(seconds).is_integer():
        raise MutationError(f"timestamps are whole seconds; cannot shift by {seconds}")
    return int(seconds)


def _check_add(values: dict[str, Any]) -> None:
    kind, file, media_id = values["kind"], values["file"], values["media_id"]
    if kind in MEDIA_KINDS:
        if (file is None) == (media_id is None):
            raise MutationError(f"a {kind} message needs a file or an existing media id (one)")
        if file is not None and kind == "document" and values.get("filename") is None:
            values["filename"] = Path(file).name
    elif file is not None or media_id is not None:
        raise MutationError(
            f"a {kind} message carries no media; file and media_id are for {', '.join(MEDIA_KINDS)}"
        )


EVENT = Param("event", "event")

duplicate = operation(
    "duplicate",
    plan_duplicate,
    EVENT,
    Param(
        "times",
        "int",
        1,
        option="--times",
        minimum=1,
        show_default=True,
        help="Extra deliveries of the same bytes.",
    ),
    Param(
        "gap_s",
        "float",
        0.0,
        option="--gap",
        minimum=0,
        show_default=True,
        metavar="S",
        help="Seconds between the copies, after the original.",
    ),
    doc="""Deliver the webhook carrying `event` again, byte-identical, `times` more times,
    `gap_s` apart after the original.""",
    help="Deliver the webhook carrying EVENT again, byte-identical, as Meta's duplicates are.",
)

drop = operation(
    "drop",
    plan_drop,
    EVENT,
    doc="Remove the event: its webhook goes when it carried nothing else, else is rewritten.",
    help="Remove EVENT (its webhook too when it carried nothing else).",
)

move = operation(
    "move",
    plan_move,
    EVENT,
    Param(
        "before",
        "event",
        None,
        keyword_only=True,
        option="--before",
        metavar="EVENT",
        help="Deliver it just before this one.",
    ),
    Param(
        "after",
        "event",
        None,
        keyword_only=True,
        option="--after",
        metavar="EVENT",
        help="Deliver it just after this one.",
    ),
    one_of=("before", "after"),
    doc="Deliver the webhook carrying `event` just before (or after) the one carrying another.",
    help="Reorder: deliver the webhook carrying EVENT before or after another one.",
)

delay = operation(
    "delay",
    plan_delay,
    EVENT,
    Param(
        "seconds", "float", option="--by", metavar="S", help="Seconds later (negative: earlier)."
    ),
    doc="Deliver the webhook carrying `event` `seconds` later (order follows the new times).",
    help="Deliver the webhook carrying EVENT later; the order follows the new times.",
)

set_field = operation(
    "set",
    plan_set_field,
    EVENT,
    Param("path", "text"),
    Param("value", "value"),
    function_name="set_field",
    doc="Set a field of an inbound message by dotted path (`text.body`, `location.latitude`).",
    help="""Set PATH (dotted, inside the message: text.body, image.caption, location.latitude,
    interactive.button_reply.title ...) of message EVENT to VALUE.

    VALUE is parsed as JSON for numbers and booleans (12.5, true); strings are taken as is.""",
)

swap_media = operation(
    "swap-media",
    plan_swap_media_file,
    Param("media_id", "text"),
    Param("file", "file"),
    Param(
        "mime_type",
        "text",
        None,
        option="--mime",
        metavar="TYPE",
        help="MIME type (default: guessed from FILE's name, else the old one).",
    ),
    uses_media=True,
    doc="""Serve `file` for `media_id`: the blob is stored and linked, and mime type, sha256
    (base64 in webhooks, hex in Graph answers) and size follow wherever the id appears.""",
    help="Serve FILE for MEDIA_ID: sha256, size and MIME type follow in webhooks and Graph "
    "answers.",
)

fail_status = operation(
    "fail-status",
    plan_fail_status,
    EVENT,
    Param(
        "code",
        "int",
        DEFAULT_FAIL_CODE,
        option="--code",
        show_default=True,
        help="Error code (131047: more than 24 h since the user last wrote).",
    ),
    doc="Turn a status into `failed` with error `code` (later delivered/read statuses go).",
    help="Turn status EVENT (or the first status of a send's wamid) into `failed`.",
)

break_signature = operation(
    "break-signature",
    functools.partial(plan_signature, mode="bad"),
    EVENT,
    doc="Replay delivers the webhook carrying `event` with a wrong X-Hub-Signature-256.",
    help="Replay sends the webhook carrying EVENT with a wrong X-Hub-Signature-256.",
)

remove_signature = operation(
    "remove-signature",
    functools.partial(plan_signature, mode="none"),
    EVENT,
    doc="Replay delivers the webhook carrying `event` without X-Hub-Signature-256.",
    help="Replay sends the webhook carrying EVENT without X-Hub-Signature-256.",
)

shift_timestamps = operation(
    "shift-timestamps",
    plan_shift_timestamps,
    Param(
        "seconds",
        "float",
        option="--by",
        metavar="S",
        cli_kind="int",
        convert=_whole_seconds,
        help="Whole seconds (negative: earlier).",
    ),
    doc="Move every message and status `timestamp` in the webhooks by `seconds` (whole).",
    help="Move every message and status timestamp in the webhooks by S seconds.",
)

pseudonymize = operation(
    "pseudonymize",
    plan_pseudonymize,
    Param("seed", "seed", None, option="--seed", help="Seed for the fake numbers (default: none)."),
    doc="""Swap users' numbers, names and wamids for consistent fakes in every webhook and
    Graph body (addons.redact.Pseudonymizer); the business's numbers stay.""",
    help="Replace users' numbers, names and wamids with consistent fakes in every body.",
)

# `add`: the CLI has one subcommand per kind of message, each with its own fields.
_WHEN = ("sender", "at", "after")
_MEDIA = ("file", "media_id", "mime_type")
_CAPTION = Param("caption", "text", None, option="--caption", help="Caption shown with the media.")
_REPLY = (
    Param("reply_id", "text", option="--id", help="The choice's id."),
    Param("title", "text", option="--title", help="The choice's title."),
    Param(
        "reply_to",
        "text",
        None,
        option="--reply-to",
        metavar="WAMID",
        help="The message holding the choices (default: the bot's last send).",
    ),
)

add_event = operation(
    "add",
    plan_add_event,
    Param("kind", "text", positional_only=True),
    Param(
        "sender",
        "text",
        None,
        keyword_only=True,
        option="--from",
        metavar="NUMBER",
        help="The user's number (default: the cassette's first sender).",
    ),
    Param(
        "at",
        "float",
        None,
        keyword_only=True,
        option="--at",
        metavar="S",
        help="Seconds from the cassette's start (default: after the last exchange).",
    ),
    Param(
        "after",
        "event",
        None,
        keyword_only=True,
        option="--after",
        metavar="EVENT",
        help="Deliver it right after this event's webhook.",
    ),
    Param(
        "file",
        "file",
        None,
        keyword_only=True,
        option="--file",
        help="The media file (stored as a new blob and media id).",
    ),
    Param(
        "media_id",
        "text",
        None,
        keyword_only=True,
        option="--media-id",
        metavar="ID",
        help="Reuse media already in the cassette instead of a file.",
    ),
    Param(
        "mime_type",
        "text",
        None,
        keyword_only=True,
        option="--mime",
        metavar="TYPE",
        help="MIME type (default: guessed from the file name).",
    ),
    function_name="add_event",
    uses_media=True,
    fields=True,
    check=_check_add,
    variant="kind",
    variants=(
        Variant(
            "text",
            "A text message.",
            (*_WHEN, Param("body", "text", option="--body", help="The message text.")),
        ),
        Variant("image", "An image (--file or --media-id).", (*_MEDIA, *_WHEN, _CAPTION)),
        Variant("video", "A video (--file or --media-id).", (*_MEDIA, *_WHEN, _CAPTION)),
        Variant(
            "audio",
            "An audio file or voice note (--file or --media-id).",
            (*_MEDIA, *_WHEN, Param("voice", "flag", option="--voice", help="A voice note.")),
        ),
        Variant(
            "document",
            "A document (--file or --media-id).",
            (
                *_MEDIA,
                *_WHEN,
                Param(
                    "filename",
                    "text",
                    None,
                    option="--filename",
                    help="File name shown (default: the file's).",
                ),
                _CAPTION,
            ),
        ),
        Variant(
            "sticker",
            "A sticker (--file or --media-id).",
            (
                *_MEDIA,
                *_WHEN,
                Param("animated", "flag", option="--animated", help="An animated sticker."),
            ),
        ),
        Variant(
            "location",
            "A shared location.",
            (
                *_WHEN,
                Param("latitude", "float", option="--lat", help="Latitude."),
                Param("longitude", "float", option="--long", help="Longitude."),
                Param("name", "text", None, option="--name", help="Place name."),
                Param("address", "text", None, option="--address", help="Address."),
            ),
        ),
        Variant("button_reply", "A tap on a reply button.", (*_WHEN, *_REPLY)),
        Variant(
            "list_reply",
            "A choice from a list.",
            (
                *_WHEN,
                *_REPLY,
                Param(
                    "description",
                    "text",
                    None,
                    option="--description",
                    help="The row's description.",
                ),
            ),
        ),
        Variant(
            "reaction",
            "A reaction to a message.",
            (
                *_WHEN,
                Param(
                    "message_id",
                    "text",
                    None,
                    option="--to",
                    metavar="WAMID",
                    help="The message reacted to (default: the bot's last send).",
                ),
                Param(
                    "emoji",
                    "text",
                    "",
                    option="--emoji",
                    help="The emoji (empty: the reaction is removed).",
                ),
            ),
        ),
    ),
    doc="""Add a new inbound message from `sender` (default: the cassette's first sender).

    kind: text (body), image/audio/video/document/sticker (file, or an existing media_id;
    caption, filename, voice), location (latitude, longitude, name, address), button_reply
    / list_reply (reply_id, title, description; reply_to), reaction (message_id, emoji).
    It gets a fresh wamid and arrives `at` seconds after the cassette's start, right after
    the delivery of event `after`, or a second after the last exchange.""",
    help="Add a new inbound message (fresh wamid) from a user.",
)
