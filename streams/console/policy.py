"""The console's approval policy: which alerts need a second person before they are sent.

Where it sits: in the console, between a draft's submit and its signing. Pure: parsed once from
``LOA_CONSOLE_APPROVAL`` when ``loa console`` starts (an unparsable rule, or one naming an
agency the registry does not know, stops the process: fail closed), then asked per draft.

Rules are ``;``-separated ``AGENCY:STATUS[/SEVERITY]=second|none,...``; ``*`` is every agency.
The most specific rule wins: agency before ``*``, then status/severity before status alone.
Without a matching rule the default holds: an Actual alert needs a second person, Exercise and
Test do not (the 2018 Hawaii false alarm was an Actual message one person sent).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["DEFAULT", "SEVERITIES", "STATUSES", "ApprovalPolicy", "parse_policy"]

STATUSES = ("Actual", "Exercise", "Test")
SEVERITIES = ("Extreme", "Severe", "Moderate", "Minor", "Unknown")
_VALUES = {"second": True, "none": False}
ANY = "*"
#: status -> needs a second person, when no rule matches
DEFAULT: Mapping[str, bool] = MappingProxyType({"Actual": True, "Exercise": False, "Test": False})

#: (agency or ``*``, status, severity or ``*``) -> needs a second person
_Key = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class ApprovalPolicy:
    """The parsed rules; :meth:`needs_second` answers for one draft."""

    rules: Mapping[_Key, bool] = field(default_factory=dict)

    def needs_second(self, agency: str, status: str, severity: str) -> bool:
        for key in (
            (agency, status, severity),
            (agency, status, ANY),
            (ANY, status, severity),
            (ANY, status, ANY),
        ):
            if key in self.rules:
                return self.rules[key]
        # a status the policy does not know (none reaches here: drafts are checked first)
        return DEFAULT.get(status, True)

    def agencies(self) -> set[str]:
        """The agencies the rules name (``*`` excluded): each must be in the registry."""
        return {agency for agency, _, _ in self.rules if agency != ANY}

    def check_agencies(self, known: Iterable[str]) -> None:
        """ValueError naming the first rule's agency that ``known`` does not hold."""
        unknown = sorted(self.agencies() - set(known))
        if unknown:
            raise ValueError(
                f"LOA_CONSOLE_APPROVAL names agency {unknown[0]!s}, which is not in the agency"
                " registry (load it with `loa agencies load`, or fix the rule)"
            )


def parse_policy(text: str) -> ApprovalPolicy:
    """Parse ``LOA_CONSOLE_APPROVAL``; ValueError saying which part is wrong and why."""
    rules: dict[_Key, bool] = {}
    for group in filter(None, (g.strip() for g in text.split(";"))):
        agency, sep, body = group.partition(":")
        agency = agency.strip()
        if not sep or not agency or not body.strip():
            raise ValueError(
                f"LOA_CONSOLE_APPROVAL: {group!r} is not AGENCY:STATUS[/SEVERITY]=second|none"
            )
        for item in filter(None, (i.strip() for i in body.split(","))):
            key, value = _rule(agency, item)
            if key in rules:
                raise ValueError(f"LOA_CONSOLE_APPROVAL: {item!r} given twice for {agency}")
            rules[key] = value
    return ApprovalPolicy(MappingProxyType(rules))


def _rule(agency: str, item: str) -> tuple[_Key, bool]:
    target, sep, value = item.partition("=")
    status, _, severity = target.strip().partition("/")
    status, severity, value = status.strip(), severity.strip() or ANY, value.strip()
    if not sep or value not in _VALUES:
        raise ValueError(f"LOA_CONSOLE_APPROVAL: {item!r}: the value must be second or none")
    if status not in STATUSES:
        raise ValueError(f"LOA_CONSOLE_APPROVAL: {item!r}: status must be one of {STATUSES}")
    if severity != ANY and severity not in SEVERITIES:
        raise ValueError(f"LOA_CONSOLE_APPROVAL: {item!r}: severity must be one of {SEVERITIES}")
    return (agency, status, severity), _VALUES[value]
