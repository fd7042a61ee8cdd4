"""A suspended resource whose spec changed still observes the new generation (kstatus waits for it)."""

from __future__ import annotations

import datetime

from packagestats import status
from tests.unit.test_status import T0, build, cond, ok


def test_suspended_observes_the_generation_and_keeps_every_value() -> None:
    good = build(None, {("container", "app"): ok(10), ("npm", "lib"): ok(5)}).status
    later = T0 + datetime.timedelta(hours=1)
    s = status.suspended(good, 3, later)
    assert s.observed_generation == 3
    assert all(c.observed_generation == 3 for c in s.conditions)
    assert cond(s, "Reconciling") == ("False", "Suspended")
    assert cond(s, "Ready") == ("True", "Succeeded")  # the last values are still true
    ready, old_ready = s.condition("Ready"), good.condition("Ready")
    assert ready is not None and old_ready is not None
    assert ready.last_transition_time == old_ready.last_transition_time
    assert s.model_dump(exclude={"observed_generation", "conditions"}) == \
        good.model_dump(exclude={"observed_generation", "conditions"})


def test_suspended_before_any_scrape() -> None:
    s = status.suspended(None, 1, T0)
    assert s.observed_generation == 1
    assert [c.type for c in s.conditions] == ["Reconciling"]
    assert s.total_downloads is None
