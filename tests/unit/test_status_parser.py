"""The ParserRefused condition: what every resource says while the parser source's latest candidate is
refused (which source and revision, why, which module stays in use), bounded, stable while nothing
changes (no status write per scrape), and False once a candidate passes; Ready is not its business."""

from __future__ import annotations

import datetime

from packagestats import api, status
from packagestats.api import Condition, PackageStatsStatus
from tests.unit.test_status import T0, build, cond, ok

DIGEST = "sha256:" + "d5a1c0f1e36a" + "0" * 52
SOURCE = "ocirepository:flux-system/packagestats-parser"
REVISION = "latest@sha256:" + "a" * 64 + ", artifact sha256:" + "b" * 64
LATER = T0 + datetime.timedelta(minutes=5)


def parser(refused: status.ParserRefusal | None = None, label: str = "0.2.0@d5a1c0f1e36a",
           digest: str = DIGEST, origin: str = "builtin") -> status.ParserState:
    return status.ParserState(label=label, digest=digest, origin=origin, source=SOURCE, refused=refused)


SELFTEST = status.ParserRefusal("SelfTestFailed", "package-headscale.html: the module's output differs in downloads",
                                REVISION)


def good() -> PackageStatsStatus:
    return build(None, {("container", "app"): ok(10), ("npm", "lib"): ok(5)}).status


def parser_condition(s: PackageStatsStatus) -> Condition:
    c = s.condition("ParserRefused")
    assert c is not None
    return c


def test_no_condition_until_a_candidate_is_refused() -> None:
    s = good()
    assert status.with_parser(s, s, parser(), T0) is s
    assert status.with_parser(s, s, None, T0) is s


def test_a_refusal_says_which_source_revision_why_and_what_stays_in_use() -> None:
    s = good()
    refused = status.with_parser(s, s, parser(SELFTEST), LATER)
    c = parser_condition(refused)
    assert (c.status, c.reason, c.last_transition_time, c.observed_generation) == \
        ("True", "SelfTestFailed", LATER, s.observed_generation)
    assert c.message == (f"The parser module from {SOURCE} (revision {REVISION}) was refused: "
                         "package-headscale.html: the module's output differs in downloads; "
                         f"parser 0.2.0@d5a1c0f1e36a ({DIGEST}) from builtin stays in use")
    # The module in use still reads the pages: Ready and every value are as they were.
    assert cond(refused, "Ready") == ("True", "Succeeded")
    assert refused.model_dump(exclude={"conditions"}) == s.model_dump(exclude={"conditions"})
    assert [c.type for c in refused.conditions] == ["Ready", "Reconciling", "Stalled", "ParserRefused"]


def test_nothing_changes_while_the_same_candidate_stays_refused() -> None:
    s = good()
    refused = status.with_parser(s, s, parser(SELFTEST), T0)
    # A later check of the same candidate, and the next scrape (build drops the condition, with_parser
    # puts it back as it was): equal statuses, so the operator writes nothing.
    assert status.with_parser(refused, refused, parser(SELFTEST), LATER) == refused
    rescraped = build(refused, {("container", "app"): ok(10), ("npm", "lib"): ok(5)}, now=T0).status
    assert status.with_parser(rescraped, refused, parser(SELFTEST), LATER) == refused
    # Another refusal, still refused: the message and reason say the new one; the transition time stays.
    other = status.ParserRefusal("DigestMismatch", "the module's sha256 is 1, the pin is 2", "sha256:" + "c" * 64)
    c = parser_condition(status.with_parser(refused, refused, parser(other), LATER))
    assert (c.status, c.reason, c.last_transition_time) == ("True", "DigestMismatch", T0)
    assert "(revision sha256:ccc" in c.message and "the pin is 2" in c.message


def test_a_good_candidate_turns_it_false_and_it_stays_so() -> None:
    s = good()
    refused = status.with_parser(s, s, parser(SELFTEST), T0)
    new = parser(label="0.3.0@0123456789ab", digest="sha256:0123456789ab" + "f" * 52,
                 origin=f"{SOURCE}@v3@sha256:" + "e" * 64)
    accepted = status.with_parser(refused, refused, new, LATER)
    c = parser_condition(accepted)
    assert (c.status, c.reason, c.last_transition_time) == ("False", "Accepted", LATER)
    assert c.message == (f"The latest module from {SOURCE} passed its checks; parser 0.3.0@0123456789ab "
                         f"(sha256:0123456789ab{'f' * 52}) from {new.origin} is in use")
    assert status.with_parser(accepted, accepted, new, LATER + datetime.timedelta(hours=1)) == accepted
    # A restarted operator that loads its module without a refusal says the same, from the old status.
    assert parser_condition(status.with_parser(refused, refused, new, LATER)) == c


def test_unknown_parser_state_keeps_the_condition_as_it_was() -> None:
    s = good()
    refused = status.with_parser(s, s, parser(SELFTEST), T0)
    rescraped = build(refused, {("container", "app"): ok(11), ("npm", "lib"): ok(5)}, now=LATER).status
    assert rescraped.condition("ParserRefused") is None  # build leaves it to with_parser
    kept = status.with_parser(rescraped, refused, None, LATER)
    assert kept.condition("ParserRefused") == refused.condition("ParserRefused")


def test_reconciling_and_suspended_keep_it() -> None:
    s = good()
    refused = status.with_parser(s, s, parser(SELFTEST), T0)
    assert parser_condition(status.reconciling(refused, 3, LATER)) == parser_condition(refused)
    suspended = status.suspended(refused, 3, LATER)
    assert parser_condition(suspended).observed_generation == 3
    assert parser_condition(suspended).status == "True"


def test_a_long_or_odd_refusal_is_bounded_and_still_says_what_stays_in_use() -> None:
    s = good()
    huge = status.ParserRefusal("Selftest failed!", "line\n\twith  spaces " + "x" * 5000,
                                "latest@sha256:" + "a" * 64 + "\n")
    c = parser_condition(status.with_parser(s, s, parser(huge, origin="file:/" + "p" * 300), T0))
    assert len(c.message) <= status.MAX_MESSAGE == api.MAX_CONDITION_MESSAGE
    assert "\n" not in c.message and "\t" not in c.message and "  " not in c.message
    assert c.message.endswith(f"from file:/{'p' * 300} stays in use")
    assert "line with spaces xxx" in c.message and "…" in c.message
    assert c.reason == "Refused"  # the CRD's reason pattern would refuse the whole status
    Condition.model_validate(c.model_dump(by_alias=True))
    # With every condition of ours present, there is room left for other controllers' conditions.
    assert len(status.OUR_CONDITIONS) < api.MAX_CONDITIONS


def test_every_refused_reason_fits_the_crd_pattern() -> None:
    s = good()
    for reason in ("DigestMismatch", "InterfaceMismatch", "LoadFailed", "NoSelfTest", "SelfTestFailed",
                   "BadArtifact", "Unreadable", "SourceUnavailable", "NoArtifact", "DownloadFailed"):
        c = parser_condition(status.with_parser(s, s, parser(status.ParserRefusal(reason, "m")), T0))
        assert c.reason == reason
        assert "(revision" not in c.message  # not known: not invented
        Condition.model_validate(c.model_dump(by_alias=True))
