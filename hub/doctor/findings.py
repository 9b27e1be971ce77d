"""What one check found: the subject, how bad, and the fix."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    """`fail`: events would be lost or held; `warn`: worth a look; `ok`: checked and fine."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Finding:
    subject: str
    severity: Severity
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"subject": self.subject, "severity": self.severity.value, "message": self.message, "fix": self.fix}
