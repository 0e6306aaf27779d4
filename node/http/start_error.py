"""The one HTTP name the CLI needs without the HTTP stack: a node without `[http]`
never imports Starlette, Hypercorn or the FHIR models (they cost ~20 MiB resident)."""

from __future__ import annotations


class HttpStartError(Exception):
    """The HTTP API cannot start; the message names the setting."""
