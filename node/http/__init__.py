"""The HTTP API: FHIR (IHE MHD), a JSON API, /metrics and the status page, on Hypercorn's
trio worker with Starlette; see docs/http.md."""
