"""Graph API errors: Meta's envelope, its codes, their titles and HTTP statuses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .ids import new_fbtrace_id

ERROR_DOCS_HREF = "/documentation/business-messaging/whatsapp/support/error-codes"


@dataclass(frozen=True)
class ErrorCode:
    """One row of Meta's error-code table."""

    code: int
    title: str
    http_status: int
    details: str
    transient: bool = False
    type: str = "OAuthException"


# Titles and HTTP statuses follow Meta's error-codes page (see whatsapp-cloud-api.md §7.2);
# rate limits are 400, not 429.
CODES: dict[int, ErrorCode] = {
    e.code: e
    for e in (
        ErrorCode(0, "AuthException", 401, "We were unable to authenticate the app user."),
        ErrorCode(1, "API Unknown", 400, "Invalid request or possible server error.", True),
        ErrorCode(
            2, "API Service", 503, "Temporary due to downtime or due to being overloaded.", True
        ),
        ErrorCode(
            4, "API Too Many Calls", 400, "The app has reached its API call rate limit.", True
        ),
        ErrorCode(
            10, "Permission Denied", 403, "Permission is either not granted or has been removed."
        ),
        ErrorCode(100, "Invalid parameter", 400, "Invalid parameter."),
        ErrorCode(
            190,
            "Invalid OAuth access token - Cannot parse access token",
            401,
            "Your access token has expired or is invalid.",
        ),
        ErrorCode(
            130429, "Rate limit hit", 400, "Cloud API message throughput has been reached.", True
        ),
        ErrorCode(
            131000,
            "Something went wrong",
            500,
            "Message failed to send due to an unknown error.",
            True,
        ),
        ErrorCode(
            131005, "Access denied", 403, "Permission is either not granted or has been removed."
        ),
        ErrorCode(
            131008,
            "Required parameter is missing",
            400,
            "The request is missing a required parameter.",
        ),
        ErrorCode(
            131009, "Parameter value is not valid", 400, "One or more parameter values are invalid."
        ),
        ErrorCode(
            131016, "Service unavailable", 500, "A service is temporarily unavailable.", True
        ),
        ErrorCode(
            131021,
            "Recipient cannot be sender",
            400,
            "Sender and recipient phone number is the same.",
        ),
        ErrorCode(131026, "Message undeliverable", 400, "Unable to deliver message."),
        ErrorCode(
            131047,
            "Re-engagement message",
            400,
            "Message failed to send because more than 24 hours have passed since the "
            "customer last replied to this number.",
        ),
        ErrorCode(
            131048,
            "Spam rate limit hit",
            400,
            "Message failed to send because there are restrictions on how many messages "
            "can be sent from this phone number.",
        ),
        ErrorCode(
            131051, "Unsupported message type", 400, "Message type is not currently supported."
        ),
        ErrorCode(
            131052, "Media download error", 400, "Unable to download the media sent by the user."
        ),
        ErrorCode(
            131053, "Media upload error", 400, "Unable to upload the media used in the message."
        ),
        ErrorCode(
            131056,
            "(Business Account, Consumer Account) pair rate limit hit",
            400,
            "Too many messages sent from the sender phone number to the same recipient "
            "phone number in a short period of time.",
            True,
        ),
        ErrorCode(
            132000,
            "Number of parameters does not match the expected number of params",
            400,
            "The number of variable parameter values does not match the template.",
        ),
        ErrorCode(
            132001,
            "Template name does not exist in the translation",
            404,
            "The template does not exist in the specified language.",
        ),
        ErrorCode(133010, "Account not registered", 400, "The phone number is not registered."),
    )
}


class GraphError(Exception):
    """An error the fake Graph API answers with, in Meta's envelope and HTTP status."""

    def __init__(
        self,
        code: int,
        details: str | None = None,
        *,
        message: str | None = None,
        http_status: int | None = None,
        error_subcode: int | None = None,
        type: str | None = None,
    ) -> None:
        known = CODES.get(code)
        self.code = code
        self.title = known.title if known else "Unknown error"
        self.details = details if details is not None else (known.details if known else "")
        self.message = message or f"(#{code}) {self.title}"
        self.http_status = http_status or (known.http_status if known else 400)
        self.error_subcode = error_subcode
        self.type = type or (known.type if known else "OAuthException")
        self.transient = known.transient if known else False
        super().__init__(self.message)

    def envelope(self, fbtrace_id: str | None = None) -> dict[str, Any]:
        """The JSON body: `{"error": {message, type, code, error_data, fbtrace_id, ...}}`."""
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.type,
            "code": self.code,
        }
        if self.error_subcode is not None:
            error["error_subcode"] = self.error_subcode
        if self.details:
            error["error_data"] = {"messaging_product": "whatsapp", "details": self.details}
        error["is_transient"] = self.transient
        error["fbtrace_id"] = fbtrace_id or new_fbtrace_id()
        return {"error": error}

    def status_error(self) -> dict[str, Any]:
        """The same error as it appears inside a `failed` status or `value.errors[]`."""
        return {
            "code": self.code,
            "title": self.title,
            "message": self.title,
            "error_data": {"details": self.details},
            "href": ERROR_DOCS_HREF,
        }


def invalid_parameter(details: str) -> GraphError:
    """Code 100, the generic 'Invalid parameter' Meta answers malformed requests with."""
    return GraphError(100, details, message="(#100) Invalid parameter")


def missing_parameter(name: str) -> GraphError:
    """Code 131008 naming the missing parameter."""
    return GraphError(131008, f"The parameter {name} is required.")


def bad_value(details: str) -> GraphError:
    """Code 131009: a parameter is present but its value is not valid."""
    return GraphError(131009, details)


def unknown_object(object_id: str) -> GraphError:
    """What Graph answers for an id that does not exist (code 100, subcode 33)."""
    return GraphError(
        100,
        f"Unsupported get request. Object with ID '{object_id}' does not exist, cannot be "
        "loaded due to missing permissions, or does not support this operation.",
        message=f"Unsupported get request. Object with ID '{object_id}' does not exist, cannot "
        "be loaded due to missing permissions, or does not support this operation.",
        error_subcode=33,
        type="GraphMethodException",
    )


def bad_token(reason: str = "Invalid OAuth access token - Cannot parse access token") -> GraphError:
    """Code 190 with HTTP 401: missing, malformed or wrong Bearer token."""
    return GraphError(190, "Your access token has expired or is invalid.", message=reason)
