"""The garbage-collector policy around ``separate``'s start-up (stemforge.cli.collector)."""
import gc

import pytest

from stemforge.cli import collector


@pytest.fixture(autouse=True)
def restore_gc():
    was_enabled = gc.isenabled()
    yield
    gc.unfreeze()
    gc.enable() if was_enabled else gc.disable()


def test_paused_until_started_then_startup_objects_are_frozen():
    gc.enable()
    with collector.startup() as started:
        assert not gc.isenabled()
        loaded = [object() for _ in range(100)]  # stands for torch and the model
        assert gc.get_freeze_count() == 0
        started()
        assert gc.isenabled()
        assert gc.get_freeze_count() >= len(loaded)
        started()  # a second call changes nothing
        assert gc.isenabled()
    assert gc.get_freeze_count() == 0
    assert gc.isenabled()


def test_garbage_made_during_separation_is_still_collected():
    class Node:
        pass

    with collector.startup() as started:
        started()
        cycle = Node()
        cycle.self = cycle
        del cycle
        assert gc.collect() >= 1


def test_state_restored_after_a_failed_load():
    gc.enable()
    with pytest.raises(RuntimeError):
        with collector.startup():
            raise RuntimeError("model did not load")
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_a_caller_that_disabled_collection_keeps_it_disabled():
    gc.disable()
    with collector.startup() as started:
        started()
        assert not gc.isenabled()
    assert not gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_separate_loads_the_model_without_collections_and_separates_with_it_frozen(tmp_path, monkeypatch):
    import stemforge.cli.separate as separate_command
    from stemforge.cli.main import main as stemforge_main
    from stemforge.inference.separator import Separator
    from tests.cli.test_formats import make_input

    seen = {}
    original_init, original_separate_all = Separator.__init__, separate_command.separate_all

    def init(self, *args, **kwargs):
        seen["enabled while loading"] = gc.isenabled()
        original_init(self, *args, **kwargs)

    def separate_all(*args, **kwargs):
        seen["enabled while separating"] = gc.isenabled()
        seen["frozen while separating"] = gc.get_freeze_count()
        return original_separate_all(*args, **kwargs)

    monkeypatch.setattr(Separator, "__init__", init)
    monkeypatch.setattr(separate_command, "separate_all", separate_all)
    gc.enable()
    song = make_input(tmp_path, "song.wav", seconds=1.0)
    assert stemforge_main(["separate", "-q", "--shifts", "0", "-o", str(tmp_path / "out"), str(song)]) == 0
    assert seen["enabled while loading"] is False
    assert seen["enabled while separating"] is True
    assert seen["frozen while separating"] > 10_000  # torch's modules, the model, ...
    assert gc.isenabled() and gc.get_freeze_count() == 0
