"""The /fhir routes, added to the API by node.http.service.api_routes."""

from __future__ import annotations

from starlette.routing import Route

from node.http.fhir import capability, iti65, iti67, iti68


def fhir_routes() -> list[Route]:
    return [
        Route("/fhir/metadata", capability.metadata, methods=["GET"]),
        Route("/fhir", iti65.provide, methods=["POST"]),
        Route("/fhir/", iti65.provide, methods=["POST"]),
        Route("/fhir/DocumentReference", iti67.search, methods=["GET"]),
        Route("/fhir/DocumentReference/{record_id}", iti67.read, methods=["GET"]),
        Route("/fhir/Binary/{record_id}", iti68.retrieve, methods=["GET"]),
    ]
