"""scratch_store: a dry run's copy of the SQLite state store; the real file is never changed or created."""

from __future__ import annotations

from pathlib import Path

from apexcal.state import Store
from apexcal.state.scratch import scratch_store


class TestScratchStore:
    def test_changes_to_the_copy_never_reach_the_file(self, tmp_path: Path) -> None:
        """What a dry run writes lands in the copy only; the real store reads as before."""
        url = f"sqlite:///{tmp_path / 'state.db'}"
        with Store.open(url) as real:
            real.set_sync_token("jane", "token-1")
            with scratch_store(real) as scratch:
                assert scratch.target_state("jane").sync_token == "token-1"
                scratch.set_sync_token("jane", "token-2")
                assert scratch.target_state("jane").sync_token == "token-2"
            assert real.target_state("jane").sync_token == "token-1"

    def test_a_store_never_used_is_not_created(self, tmp_path: Path) -> None:
        """Without a state file yet, the dry run starts from an empty store and creates none."""
        path = tmp_path / "state.db"
        with Store.open(f"sqlite:///{path}", migrate_schema=False) as real, scratch_store(real) as scratch:
            scratch.set_sync_token("jane", "token-1")
        assert not path.exists()
