"""The URIs this node's FHIR API speaks: identifier systems and its one extension."""

from __future__ import annotations

PATIENT_ADDRESS = "urn:medvault:patient-address"  # a person's address (66 bytes, hex)
NODE_KEY = "urn:medvault:node-key"  # a node's Ed25519 public key (32 bytes, hex)
PERSON_KEY = "urn:medvault:person-key"  # a person's public key (32) or address (66), hex
GRANTEE_EXTENSION = "urn:medvault:fhir:grantee"  # DocumentReference: who else gets a grant
RECORD_ID = "urn:medvault:record-id"  # the record a DocumentReference describes

# RecordMetadata.extra key holding the DocumentReference as published (JSON, no data).
DOCUMENT_KEY = "fhir.DocumentReference"

FHIR_VERSION = "4.0.1"
MHD_RECIPIENT = "https://profiles.ihe.net/ITI/MHD/CapabilityStatement/IHE.MHD.DocumentRecipient"
MHD_RESPONDER = "https://profiles.ihe.net/ITI/MHD/CapabilityStatement/IHE.MHD.DocumentResponder"
