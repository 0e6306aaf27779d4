"""The FHIR R4 API of IHE MHD: ITI-65 publish, ITI-67 search, ITI-68 retrieve (docs/fhir.md)."""
