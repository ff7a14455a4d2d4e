"""Meta's hosts and the Graph API version we speak when a request names none."""

from __future__ import annotations

GRAPH_HOST = "graph.facebook.com"  # the Graph API: sends, media metadata, uploads
GRAPH_URL = f"https://{GRAPH_HOST}"
MEDIA_HOST = "lookaside.fbsbx.com"  # where media download URLs point
MEDIA_URL = f"https://{MEDIA_HOST}"
META_HOSTS = (GRAPH_HOST, MEDIA_HOST)
# Echoed in `facebook-api-version` when the path names no version: Meta then uses the
# app's default version; ours is the one Meta's published OpenAPI spec describes.
DEFAULT_API_VERSION = "v23.0"
