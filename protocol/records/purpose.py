"""Purpose of use: why a record is read, from a small fixed vocabulary.

The codes are HL7 v3 PurposeOfUse (2.16.840.1.113883.1.11.20448), so an
audit can be handed to tools that speak HL7/FHIR AuditEvent without a
mapping table. Only these five are accepted: a statement with any other code
is refused, so every read in the ledger names one of them.
"""

from __future__ import annotations

import enum


class Purpose(enum.StrEnum):
    TREAT = "TREAT"  # treatment
    HPAYMT = "HPAYMT"  # payment
    HOPERAT = "HOPERAT"  # operations (a node's audits, repair, its own upkeep)
    ETREAT = "ETREAT"  # emergency treatment (break-glass)
    PATRQT = "PATRQT"  # patient request

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    Purpose.TREAT: "treatment",
    Purpose.HPAYMT: "payment",
    Purpose.HOPERAT: "operations",
    Purpose.ETREAT: "emergency treatment",
    Purpose.PATRQT: "patient request",
}
BY_NAME: dict[str, Purpose] = {
    **{p.label.replace(" ", "-"): p for p in Purpose},
    **{p.value.lower(): p for p in Purpose},
    "emergency": Purpose.ETREAT,
}


def parse_purpose(name: str) -> Purpose:
    """A purpose from its code or its name (`treatment`, `TREAT`, `emergency`...)."""
    found = BY_NAME.get(name.strip().lower())
    if found is None:
        names = ", ".join(sorted({p.label.replace(" ", "-") for p in Purpose}))
        raise ValueError(f"unknown purpose of use {name!r}: one of {names} (or its HL7 code)")
    return found
