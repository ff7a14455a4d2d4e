"""`pseudowa cassette mutate NAME --out NEW|--in-place <operation> ...`: thin click shells
over `pseudowa.proxy.cassette.mutations`, one subcommand per operation, each printing one line.

EVENT is an index as `pseudowa cassette show` lists events (`#3` or `3`) or a wamid.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from pseudowa.proxy.errors import UserError
from pseudowa.storage.errors import StoreError
from pseudowa.storage.store import CassetteStore

EVENT_HELP = "EVENT is an index as `cassette show` lists events (#3 or 3), or a wamid."


class _OneLineGroup(click.Group):
    """Library errors meant for the user become one line and exit status 1 (like the root
    group does), also when this group is invoked on its own."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (StoreError, UserError) as e:
            raise click.ClickException(str(e)) from e


class _MutateGroup(_OneLineGroup):
    """`mutate NAME --out NEW <operation> ...`: the group's own options may follow NAME.

    A group stops parsing its options at its first argument (the rest belongs to the
    subcommand), so the options right after NAME are moved in front of it.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-"):
            takes_value = {
                opt for p in self.params if isinstance(p, click.Option) and not p.is_flag
                for opt in p.opts
            }
            name, rest, moved = args[0], list(args[1:]), []
            while rest and rest[0].startswith("-"):
                opt = rest.pop(0)
                moved.append(opt)
                if opt in takes_value and rest:
                    moved.append(rest.pop(0))
            args = [*moved, name, *rest]
        return super().parse_args(ctx, args)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return ["NAME", "--out NEW|--in-place", "[--db URL]", "COMMAND [ARGS]..."]


@click.group("mutate", cls=_MutateGroup, epilog=EVENT_HELP)
@click.argument("name")
@click.option("--out", metavar="NEW", default=None,
              help="Write the result to a new cassette NEW (a copy of NAME, then changed).")
@click.option("--in-place", is_flag=True, help="Change cassette NAME itself.")
@click.option("--db", "db", metavar="URL", default=None,
              help="Store URL (SQLAlchemy form). Default: $PSEUDOWA_DB, else the default store.")
@click.pass_context
def mutate_group(ctx: click.Context, name: str, out: str | None, in_place: bool,
                 db: str | None) -> None:
    """Craft edge cases from cassette NAME by WhatsApp meaning: duplicate, drop, reorder,
    delay or edit webhooks, swap media, fail statuses, add messages, break signatures.

    Every operation appends itself to the history of the cassette it writes.
    """
    ctx.obj = {"name": name, "out": out, "in_place": in_place, "db": db}


Operation = Callable[..., Any]


def _run(operation: Operation, *args: Any, **kwargs: Any) -> None:
    """Open the store, apply the mutation to NAME (--out or --in-place), print one line."""
    ctx = click.get_current_context()
    opts = ctx.find_object(dict) or {}
    out, in_place = opts.get("out"), opts.get("in_place", False)
    if in_place and out:
        raise UserError("give --out NEW or --in-place, not both")
    if not in_place and not out:
        raise UserError("give --out NEW (a new cassette to write) or --in-place")
    url = opts.get("db") or ctx.find_root().params.get("db")
    with CassetteStore.open(url) as store:
        result = operation(store, opts["name"], *args, out=out, in_place=in_place, **kwargs)
    click.echo(result.line())


def _mutate() -> Any:
    # Imported when a mutation runs, so `pseudowa --help` does not pay for it.
    from pseudowa.proxy.cassette import mutations as mutate

    return mutate


@mutate_group.command("duplicate")
@click.argument("event")
@click.option("--times", default=1, show_default=True, type=click.IntRange(min=1),
              help="Extra deliveries of the same bytes.")
@click.option("--gap", "gap_s", default=0.0, show_default=True, type=click.FloatRange(min=0),
              metavar="S", help="Seconds between the copies, after the original.")
def duplicate_cmd(event: str, times: int, gap_s: float) -> None:
    """Deliver the webhook carrying EVENT again, byte-identical, as Meta's duplicates are."""
    _run(_mutate().duplicate, event, times, gap_s)


@mutate_group.command("drop")
@click.argument("event")
def drop_cmd(event: str) -> None:
    """Remove EVENT (its webhook too when it carried nothing else)."""
    _run(_mutate().drop, event)


@mutate_group.command("move")
@click.argument("event")
@click.option("--before", metavar="EVENT", default=None, help="Deliver it just before this one.")
@click.option("--after", metavar="EVENT", default=None, help="Deliver it just after this one.")
def move_cmd(event: str, before: str | None, after: str | None) -> None:
    """Reorder: deliver the webhook carrying EVENT before or after another one."""
    if (before is None) == (after is None):
        raise UserError("move takes exactly one of --before EVENT or --after EVENT")
    _run(_mutate().move, event, before=before, after=after)


@mutate_group.command("delay")
@click.argument("event")
@click.option("--by", "seconds", required=True, type=float, metavar="S",
              help="Seconds later (negative: earlier).")
def delay_cmd(event: str, seconds: float) -> None:
    """Deliver the webhook carrying EVENT later; the order follows the new times."""
    _run(_mutate().delay, event, seconds)


@mutate_group.command("set")
@click.argument("event")
@click.argument("path")
@click.argument("value")
def set_cmd(event: str, path: str, value: str) -> None:
    """Set PATH (dotted, inside the message: text.body, image.caption, location.latitude,
    interactive.button_reply.title ...) of message EVENT to VALUE.

    VALUE is parsed as JSON for numbers and booleans (12.5, true); strings are taken as is.
    """
    _run(_mutate().set_field, event, path, value)


@mutate_group.command("swap-media")
@click.argument("media_id")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--mime", "mime_type", default=None, metavar="TYPE",
              help="MIME type (default: guessed from FILE's name, else the old one).")
def swap_media_cmd(media_id: str, file: Path, mime_type: str | None) -> None:
    """Serve FILE for MEDIA_ID: sha256, size and MIME type follow in webhooks and Graph answers."""
    _run(_mutate().swap_media, media_id, file, mime_type)


@mutate_group.command("fail-status")
@click.argument("event")
@click.option("--code", default=131047, show_default=True, type=int,
              help="Error code (131047: more than 24 h since the user last wrote).")
def fail_status_cmd(event: str, code: int) -> None:
    """Turn status EVENT (or the first status of a send's wamid) into `failed`."""
    _run(_mutate().fail_status, event, code)


@mutate_group.command("break-signature")
@click.argument("event")
def break_signature_cmd(event: str) -> None:
    """Replay sends the webhook carrying EVENT with a wrong X-Hub-Signature-256."""
    _run(_mutate().break_signature, event)


@mutate_group.command("remove-signature")
@click.argument("event")
def remove_signature_cmd(event: str) -> None:
    """Replay sends the webhook carrying EVENT without X-Hub-Signature-256."""
    _run(_mutate().remove_signature, event)


@mutate_group.command("shift-timestamps")
@click.option("--by", "seconds", required=True, type=int, metavar="S",
              help="Whole seconds (negative: earlier).")
def shift_timestamps_cmd(seconds: int) -> None:
    """Move every message and status timestamp in the webhooks by S seconds."""
    _run(_mutate().shift_timestamps, seconds)


@mutate_group.command("pseudonymize")
@click.option("--seed", default=None, help="Seed for the fake numbers (default: none).")
def pseudonymize_cmd(seed: str | None) -> None:
    """Replace users' numbers, names and wamids with consistent fakes in every body."""
    _run(_mutate().pseudonymize, seed)


# -- add -----------------------------------------------------------------------------------


@mutate_group.group("add", epilog=EVENT_HELP)
def add_group() -> None:
    """Add a new inbound message (fresh wamid) from a user."""


def _when_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--after", metavar="EVENT", default=None,
                      help="Deliver it right after this event's webhook.")(fn)
    fn = click.option("--at", "at", type=float, default=None, metavar="S",
                      help="Seconds from the cassette's start (default: after the last exchange).")(fn)
    fn = click.option("--from", "sender", metavar="NUMBER", default=None,
                      help="The user's number (default: the cassette's first sender).")(fn)
    return fn


def _media_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--mime", "mime_type", default=None, metavar="TYPE",
                      help="MIME type (default: guessed from the file name).")(fn)
    fn = click.option("--media-id", default=None, metavar="ID",
                      help="Reuse media already in the cassette instead of a file.")(fn)
    fn = click.option("--file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                      default=None, help="The media file (stored as a new blob and media id).")(fn)
    return fn


def _add(kind: str, **kw: Any) -> None:
    _run(_mutate().add_event, kind, **kw)


@add_group.command("text")
@_when_options
@click.option("--body", required=True, help="The message text.")
def add_text(**kw: Any) -> None:
    """A text message."""
    _add("text", **kw)


def _media_command(kind: str, extra: list[Callable[[Callable[..., Any]], Callable[..., Any]]],
                   doc: str) -> None:
    def command(**kw: Any) -> None:
        _add(kind, **kw)

    command.__doc__ = doc
    fn: Callable[..., Any] = command
    for option in extra:
        fn = option(fn)
    fn = _media_options(_when_options(fn))
    add_group.command(kind)(fn)


_CAPTION = click.option("--caption", default=None, help="Caption shown with the media.")
_media_command("image", [_CAPTION], "An image (--file or --media-id).")
_media_command("video", [_CAPTION], "A video (--file or --media-id).")
_media_command("audio", [click.option("--voice", is_flag=True, help="A voice note.")],
               "An audio file or voice note (--file or --media-id).")
_media_command("document", [_CAPTION, click.option("--filename", default=None,
                                                   help="File name shown (default: the file's).")],
               "A document (--file or --media-id).")
_media_command("sticker", [click.option("--animated", is_flag=True, help="An animated sticker.")],
               "A sticker (--file or --media-id).")


@add_group.command("location")
@_when_options
@click.option("--lat", "latitude", required=True, type=float, help="Latitude.")
@click.option("--long", "longitude", required=True, type=float, help="Longitude.")
@click.option("--name", default=None, help="Place name.")
@click.option("--address", default=None, help="Address.")
def add_location(**kw: Any) -> None:
    """A shared location."""
    _add("location", **kw)


def _reply_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--reply-to", default=None, metavar="WAMID",
                      help="The message holding the choices (default: the bot's last send).")(fn)
    fn = click.option("--title", required=True, help="The choice's title.")(fn)
    fn = click.option("--id", "reply_id", required=True, help="The choice's id.")(fn)
    return fn


@add_group.command("button-reply")
@_when_options
@_reply_options
def add_button_reply(**kw: Any) -> None:
    """A tap on a reply button."""
    _add("button_reply", **kw)


@add_group.command("list-reply")
@_when_options
@_reply_options
@click.option("--description", default=None, help="The row's description.")
def add_list_reply(**kw: Any) -> None:
    """A choice from a list."""
    _add("list_reply", **kw)


@add_group.command("reaction")
@_when_options
@click.option("--to", "message_id", default=None, metavar="WAMID",
              help="The message reacted to (default: the bot's last send).")
@click.option("--emoji", default="", help="The emoji (empty: the reaction is removed).")
def add_reaction(**kw: Any) -> None:
    """A reaction to a message."""
    _add("reaction", **kw)
