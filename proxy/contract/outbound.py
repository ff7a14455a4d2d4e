"""What a bot sends to `POST /{version}/{phone_number_id}/messages`, validated like Meta.

`parse_send` returns a `SendRequest` or a `MarkRead`, or raises `GraphError` with the
code and HTTP status Meta would answer (whatsapp-cloud-api.md §6.1, §7.2).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import GraphError
from .errors import bad_value
from .errors import invalid_parameter
from .errors import missing_parameter
from .ids import wa_id_of
from .webhooks import MEDIA_TYPES

SEND_TYPES = (
    "text",
    *MEDIA_TYPES,
    "location",
    "contacts",
    "template",
    "interactive",
    "reaction",
)
INTERACTIVE_TYPES = (
    "button",
    "list",
    "cta_url",
    "flow",
    "product",
    "product_list",
    "catalog_message",
    "location_request_message",
    "order_details",
    "order_status",
)
# Limits from Meta's docs (whatsapp-cloud-api.md §6.1).
TEXT_MAX = 4096
CAPTION_MAX = 1024
BUTTONS_MAX = 3
BUTTON_TITLE_MAX = 20
LIST_ROWS_MAX = 10
LIST_SECTIONS_MAX = 10
ROW_TITLE_MAX = 24
ROW_DESCRIPTION_MAX = 72
# The deepest send Meta documents (a template's components → parameters → currency or
# date_time) nests under 10 levels; anything past this is no message, and code that walks
# a body recursively (request shapes, field paths) must never meet it.
NESTING_MAX = 64


@dataclass(frozen=True)
class SendRequest:
    """A valid outbound message."""

    to: str
    wa_id: str  # `to` as WhatsApp knows it: digits only
    type: str
    body: dict[str, Any]  # the whole request body as sent
    media_id: str | None = None
    media_link: str | None = None
    reply_to: str | None = None  # `context.message_id`
    biz_opaque_callback_data: str | None = None

    @property
    def category(self) -> str:
        """The conversation category Meta would bill it under."""
        return "utility" if self.type == "template" else "service"


@dataclass(frozen=True)
class MarkRead:
    """A read receipt for an inbound message, optionally with a typing indicator."""

    message_id: str
    typing_indicator: bool = False


def _too_deep(value: object, limit: int) -> bool:
    """True when JSON `value` nests objects/arrays more than `limit` levels deep (walked
    without recursion, so any depth json.loads accepted is measured safely)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def parse_send(raw: bytes) -> SendRequest | MarkRead:
    """Validate a messages request body; raise `GraphError` as Meta would."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise invalid_parameter(f"The request body is not valid JSON: {e}") from e
    if not isinstance(body, dict):
        raise invalid_parameter("The request body must be a JSON object.")
    if _too_deep(body, NESTING_MAX):
        raise invalid_parameter(f"The request body nests deeper than {NESTING_MAX} levels.")
    product = body.get("messaging_product")
    if product is None:
        raise missing_parameter("messaging_product")
    if product != "whatsapp":
        raise bad_value("The parameter messaging_product must be 'whatsapp'.")
    if is_read_receipt(body):
        return _mark_read(body)
    to = body.get("to")
    if to is None or to == "":
        raise missing_parameter("to")
    wa_id = wa_id_of(str(to))
    if not isinstance(to, str) or not wa_id or len(wa_id) > 20:
        raise bad_value(f"The parameter to has an invalid phone number: {to!r}.")
    rtype = body.get("recipient_type", "individual")
    if rtype not in ("individual", "group"):
        raise bad_value("The parameter recipient_type must be 'individual' or 'group'.")
    mtype = body.get("type", "text")
    if mtype not in SEND_TYPES:
        raise bad_value(
            f"Unsupported message type {mtype!r}; type must be one of: {', '.join(SEND_TYPES)}."
        )
    sub = body.get(mtype)
    if sub is None:
        raise missing_parameter(mtype)
    media_id, media_link = _check_type(mtype, sub)
    context = body.get("context")
    reply_to = context.get("message_id") if isinstance(context, dict) else None
    opaque = body.get("biz_opaque_callback_data")
    return SendRequest(
        to=to,
        wa_id=wa_id,
        type=mtype,
        body=body,
        media_id=media_id,
        media_link=media_link,
        reply_to=reply_to if isinstance(reply_to, str) else None,
        biz_opaque_callback_data=opaque if isinstance(opaque, str) else None,
    )


def is_read_receipt(body: Any) -> bool:
    """True for a parsed messages body that is a read receipt (`status` and no `type`).

    Read receipts share the send endpoint but are not sends: they get `{"success": true}`
    and are never answered from recordings.
    """
    return isinstance(body, dict) and "status" in body and "type" not in body


def _mark_read(body: dict[str, Any]) -> MarkRead:
    if body.get("status") != "read":
        raise bad_value("The parameter status must be 'read'.")
    message_id = body.get("message_id")
    if not isinstance(message_id, str) or not message_id:
        raise missing_parameter("message_id")
    typing = body.get("typing_indicator")
    if typing is not None and (not isinstance(typing, dict) or typing.get("type") != "text"):
        raise bad_value("The parameter typing_indicator.type must be 'text'.")
    return MarkRead(message_id, typing is not None)


def _require_object(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_value(f"The parameter {name} must be a JSON object.")
    return value


def _require_text(name: str, value: Any, limit: int | None = None) -> str:
    if value is None or value == "":
        raise missing_parameter(name)
    if not isinstance(value, str):
        raise bad_value(f"The parameter {name} must be a string.")
    if limit is not None and len(value) > limit:
        raise bad_value(f"The parameter {name} is too long: {len(value)} characters, max {limit}.")
    return value


def _check_type(mtype: str, sub: Any) -> tuple[str | None, str | None]:
    """Validate the type's sub-object; return the media id or link it names."""
    if mtype == "contacts":
        if not isinstance(sub, list) or not sub:
            raise bad_value("The parameter contacts must be a non-empty array.")
        for i, card in enumerate(sub):
            name = _require_object(f"contacts[{i}]", card).get("name")
            _require_text(
                f"contacts[{i}].name.formatted_name",
                _require_object(f"contacts[{i}].name", name or {}).get("formatted_name"),
            )
        return None, None
    obj = _require_object(mtype, sub)
    if mtype == "text":
        _require_text("text.body", obj.get("body"), TEXT_MAX)
    elif mtype in MEDIA_TYPES:
        return _check_media(mtype, obj)
    elif mtype == "location":
        for key in ("latitude", "longitude"):
            value = obj.get(key)
            if value is None:
                raise missing_parameter(f"location.{key}")
            try:
                float(value)
            except (TypeError, ValueError) as e:
                raise bad_value(f"The parameter location.{key} must be a number.") from e
    elif mtype == "template":
        _require_text("template.name", obj.get("name"))
        language = _require_object("template.language", obj.get("language") or {})
        _require_text("template.language.code", language.get("code"))
        components = obj.get("components", [])
        if not isinstance(components, list):
            raise bad_value("The parameter template.components must be an array.")
    elif mtype == "interactive":
        _check_interactive(obj)
    elif mtype == "reaction":
        _require_text("reaction.message_id", obj.get("message_id"))
        if not isinstance(obj.get("emoji", ""), str):
            raise bad_value("The parameter reaction.emoji must be a string.")
    return None, None


def _check_media(kind: str, obj: dict[str, Any]) -> tuple[str | None, str | None]:
    media_id, link = obj.get("id"), obj.get("link")
    if media_id is None and link is None:
        raise missing_parameter(f"{kind}.id or {kind}.link")
    if media_id is not None and link is not None:
        raise bad_value(f"Use either {kind}.id or {kind}.link, not both.")
    if media_id is not None and not (isinstance(media_id, str) and media_id.strip()):
        raise bad_value(f"The parameter {kind}.id must be a non-empty string.")
    if link is not None and not (
        isinstance(link, str) and link.startswith(("http://", "https://"))
    ):
        raise bad_value(f"The parameter {kind}.link must be an http(s) URL.")
    caption = obj.get("caption")
    if caption is not None:
        if kind in ("audio", "sticker"):
            raise bad_value(f"The parameter {kind}.caption is not supported for {kind}.")
        _require_text(f"{kind}.caption", caption, CAPTION_MAX)
    return media_id, link


def _check_interactive(obj: dict[str, Any]) -> None:
    itype = obj.get("type")
    if itype is None:
        raise missing_parameter("interactive.type")
    if itype not in INTERACTIVE_TYPES:
        allowed = ", ".join(INTERACTIVE_TYPES)
        raise bad_value(f"Unsupported interactive type {itype!r}; must be one of: {allowed}.")
    action = _require_object("interactive.action", obj.get("action"))
    if itype in ("button", "list"):
        body = _require_object("interactive.body", obj.get("body"))
        _require_text("interactive.body.text", body.get("text"), TEXT_MAX)
    if itype == "button":
        buttons = action.get("buttons")
        if not isinstance(buttons, list) or not buttons:
            raise missing_parameter("interactive.action.buttons")
        if len(buttons) > BUTTONS_MAX:
            raise bad_value(f"At most {BUTTONS_MAX} reply buttons are allowed, got {len(buttons)}.")
        for i, button in enumerate(buttons):
            reply = _require_object(
                f"interactive.action.buttons[{i}].reply",
                _require_object(f"buttons[{i}]", button).get("reply"),
            )
            _require_text(f"interactive.action.buttons[{i}].reply.id", reply.get("id"), 256)
            _require_text(
                f"interactive.action.buttons[{i}].reply.title", reply.get("title"), BUTTON_TITLE_MAX
            )
    elif itype == "list":
        _require_text("interactive.action.button", action.get("button"), BUTTON_TITLE_MAX)
        sections = action.get("sections")
        if not isinstance(sections, list) or not sections:
            raise missing_parameter("interactive.action.sections")
        if len(sections) > LIST_SECTIONS_MAX:
            raise bad_value(f"At most {LIST_SECTIONS_MAX} sections are allowed.")
        rows = 0
        for i, section in enumerate(sections):
            section_rows = _require_object(f"sections[{i}]", section).get("rows")
            if not isinstance(section_rows, list) or not section_rows:
                raise missing_parameter(f"interactive.action.sections[{i}].rows")
            for j, row in enumerate(section_rows):
                where = f"interactive.action.sections[{i}].rows[{j}]"
                row = _require_object(where, row)
                _require_text(f"{where}.id", row.get("id"), 200)
                _require_text(f"{where}.title", row.get("title"), ROW_TITLE_MAX)
                if row.get("description") is not None:
                    _require_text(f"{where}.description", row["description"], ROW_DESCRIPTION_MAX)
            rows += len(section_rows)
        if rows > LIST_ROWS_MAX:
            raise bad_value(f"At most {LIST_ROWS_MAX} rows are allowed in total, got {rows}.")
    elif itype == "cta_url":
        params = _require_object("interactive.action.parameters", action.get("parameters"))
        _require_text("interactive.action.parameters.display_text", params.get("display_text"))
        _require_text("interactive.action.parameters.url", params.get("url"))


def error_for_unknown_media(media_id: str) -> GraphError:
    """A send naming a media id the sandbox never saw (Meta: 131053 asynchronously; here sync)."""
    return GraphError(131053, f"Media id {media_id} was not uploaded or has expired.")
