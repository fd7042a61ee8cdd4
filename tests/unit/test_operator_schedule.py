"""The operator's per-resource planning, without a cluster: versions every Nth scrape, and which
status changes are worth a write."""

from __future__ import annotations

import datetime

from packagestats import api
from packagestats.operator import ResourceState, _sans_times, _versions_due


def test_versions_list_every_nth_scrape_with_spread_phases() -> None:
    state = ResourceState()
    due = _versions_due(state, 6)
    keys = [("container", f"p{i}") for i in range(60)]
    rounds = [[due(k) for k in keys] for _ in range(12)]
    for i, _ in enumerate(keys):
        assert [r[i] for r in rounds].count(True) == 2  # twice in 12 scrapes
    # Not all in the same scrape: the phases are spread.
    assert all(0 < sum(r) < len(keys) for r in rounds)


def test_only_moved_times_are_not_a_change() -> None:
    t0 = datetime.datetime(2026, 12, 1, 10, tzinfo=datetime.UTC)
    pkg = api.PackageStatus(name="a", type="container", downloads=5, last_scrape_time=t0)
    before = api.PackageStatsStatus(total_downloads=5, last_scrape_time=t0, packages=[pkg])
    later = t0 + datetime.timedelta(hours=1)
    same = before.model_copy(update={"last_scrape_time": later,
                                     "packages": [pkg.model_copy(update={"last_scrape_time": later})]})
    assert same != before and _sans_times(same) == _sans_times(before)
    changed = same.model_copy(update={"total_downloads": 6})
    assert _sans_times(changed) != _sans_times(before)
