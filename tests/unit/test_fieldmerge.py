"""The field-level merge: which calendar edits go to the CRM, field by field, and that it settles."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from apexcal.ical.editable import EDITABLE
from apexcal.sync.fieldmerge import FieldView, baseline_after, decide_fields
from apexcal.sync.writeback_policy import ConflictPolicy

VALUES = st.sampled_from(["a", "b", "c"])
SIDES = st.fixed_dictionaries(dict.fromkeys(EDITABLE, VALUES))
POLICIES = st.sampled_from(list(ConflictPolicy))
ENABLED = st.sets(st.sampled_from(EDITABLE))
T0, T1 = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)


class TestDecide:
    def test_no_baseline_means_no_remote_change_known(self) -> None:
        """A record from before field writeback never sends anything to the CRM."""
        view = FieldView(baseline=None, remote={"subject": "x"}, crm={"subject": "y"})
        assert decide_fields(view, enabled=EDITABLE, policy=ConflictPolicy.CALENDAR_WINS).writeback == ()

    def test_different_fields_changed_on_each_side_are_both_kept(self) -> None:
        """The calendar's rename goes back while the CRM's move stays for the update."""
        base = {"subject": "s0", "start": "t0", "end": "e0", "location": "l0"}
        view = FieldView(baseline=base, remote={**base, "subject": "s1"}, crm={**base, "start": "t1", "end": "e1"})
        decision = decide_fields(view, enabled=EDITABLE, policy=ConflictPolicy.CRM_WINS)
        assert decision.writeback == ("subject",)
        assert decision.conflicts == ()

    def test_same_field_changed_on_both_sides_follows_the_policy(self) -> None:
        """crm-wins keeps the CRM's value, calendar-wins sends the calendar's, newest-wins compares times."""
        base = {"subject": "s0"}
        view = FieldView(baseline=base, remote={"subject": "cal"}, crm={"subject": "crm"}, crm_updated_at=T0, remote_modified=T1)
        assert decide_fields(view, enabled=EDITABLE, policy=ConflictPolicy.CRM_WINS).writeback == ()
        assert decide_fields(view, enabled=EDITABLE, policy=ConflictPolicy.CALENDAR_WINS).writeback == ("subject",)
        assert decide_fields(view, enabled=EDITABLE, policy=ConflictPolicy.NEWEST_WINS).writeback == ("subject",)
        older = FieldView(baseline=base, remote={"subject": "cal"}, crm={"subject": "crm"}, crm_updated_at=T1, remote_modified=T0)
        assert decide_fields(older, enabled=EDITABLE, policy=ConflictPolicy.NEWEST_WINS).writeback == ()

    def test_a_timing_problem_is_blocked_not_sent(self) -> None:
        """An RRULE or unknown zone in the calendar never reaches the CRM, whatever the policy."""
        base = {"start": "t0", "end": "e0", "subject": "s"}
        view = FieldView(baseline=base, remote={"start": "!", "end": "!", "subject": "s2"}, crm=base, problem=True)
        decision = decide_fields(view, enabled=EDITABLE, policy=ConflictPolicy.CALENDAR_WINS)
        assert decision.writeback == ("subject",)
        assert decision.blocked == ("start", "end")


class TestMergeProperties:
    @settings(max_examples=400, deadline=None)
    @given(base=SIDES, remote=SIDES, crm=SIDES, policy=POLICIES, enabled=ENABLED)
    def test_each_field_ends_where_its_rule_says_and_the_next_cycle_sends_nothing(
        self, base: dict[str, str], remote: dict[str, str], crm: dict[str, str], policy: ConflictPolicy, enabled: set[str]
    ) -> None:
        """Field-level merge: one-sided changes survive, conflicts follow the policy, and it settles at once."""
        view = FieldView(baseline=base, remote=remote, crm=crm, crm_updated_at=T0, remote_modified=T1)
        decision = decide_fields(view, enabled=enabled, policy=policy)
        # The CRM takes the written-back fields; the update then writes the CRM's state to the calendar.
        crm_after = {**crm, **{f: remote[f] for f in decision.writeback}}
        for name in EDITABLE:
            cal_changed, crm_changed = remote[name] != base[name], crm[name] != base[name]
            if name not in enabled or not cal_changed:
                assert crm_after[name] == crm[name]
            elif not crm_changed:
                assert crm_after[name] == remote[name]
            elif crm[name] == remote[name]:
                assert name in decision.agreed
            else:
                winner = "crm" if policy is ConflictPolicy.CRM_WINS else "calendar"
                assert crm_after[name] == (crm[name] if winner == "crm" else remote[name])
        # Writebacks and agreement move the baseline; the push makes both sides the CRM's.
        pushed = baseline_after(baseline_after(base, remote, decision.writeback + decision.agreed), crm_after, EDITABLE)
        again = decide_fields(FieldView(baseline=pushed, remote=crm_after, crm=crm_after), enabled=enabled, policy=policy)
        assert again.writeback == ()
        assert again.conflicts == ()
        # Even before the push (a crash after the PATCH), the written-back fields are settled.
        early = baseline_after(base, remote, decision.writeback + decision.agreed)
        before = decide_fields(FieldView(baseline=early, remote=remote, crm=crm_after), enabled=enabled, policy=policy)
        assert set(before.writeback).isdisjoint(decision.writeback)
