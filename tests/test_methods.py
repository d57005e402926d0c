"""The anonymizer interface: every registered method fits, transforms, saves, loads, fingerprints
and (production methods) is batch invariant; label-free methods never see private labels."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from latentanon.errors import ModelError
from latentanon.methods.base import PRIVATE_COLUMNS, Method, fit_view
from latentanon.methods.config import AdapterConfig, AdversarialConfig, TrainConfig
from latentanon.methods.registry import METHODS, create_method, load_method, method_class
from latentanon.tasks.private import ATTRIBUTES
from test_tuning import make_feature_sets

TINY = TrainConfig(
    adapter=AdapterConfig(blocks=1, heads=2), epochs=2, batch_size=32, lr=1e-3, adversarial=AdversarialConfig(steps=3)
)


def concrete(base: str) -> str:
    return "noise@0.3" if base == "noise" else base


@pytest.fixture(scope="module")
def sets():
    return make_feature_sets(dim=16, per_split={"train": 8, "val": 4, "test": 4})


@pytest.fixture(scope="module")
def fitted(sets):
    methods = {base: create_method(concrete(base), TINY).fit(sets, seed=0) for base in METHODS}
    for method in methods.values():
        method.reproducible_noise = True  # stochastic methods: comparable draws in these tests
    return methods


def _all_close(a, b):
    for kind in a.arrays:
        for x, y in zip(a.kind(kind), b.kind(kind)):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("base", sorted(METHODS))
def test_round_trip_and_fingerprint(base, sets, fitted, tmp_path):
    method = fitted[base]
    fs = sets["privacy_videos"]
    out = method.transform(fs)
    assert out.meta["anonymizer"] == method.name and out.meta["method_id"] == method.fingerprint()
    assert list(out.records["video_id"]) == list(fs.records["video_id"])
    for kind in fs.arrays:
        assert [a.shape for a in out.kind(kind)] == [(*a.shape[:-1], method.output_dim) for a in fs.kind(kind)]
        assert all(a.dtype == np.float32 for a in out.kind(kind))
    assert method.fingerprint() == method.fingerprint()
    method.save(tmp_path / "m")
    loaded = load_method(tmp_path / "m")
    loaded.reproducible_noise = True
    assert type(loaded) is type(method) and loaded.name == method.name
    assert loaded.fingerprint() == method.fingerprint()
    _all_close(loaded.transform(fs), out)
    assert json.loads((tmp_path / "m" / "method.json").read_text())["fingerprint"] == method.fingerprint()
    # the pyfunc contract: one (T, d) sequence (alone: the batch-attending form differs by design)
    sequence = fs.kind("clips")[0]
    alone = loaded.transform_sequence(sequence, "clips", str(fs.records["video_id"][0]))
    assert alone.shape == (sequence.shape[0], method.output_dim) and alone.dtype == np.float32
    if method.batch_invariant:
        np.testing.assert_allclose(alone, out.kind("clips")[0], rtol=1e-5, atol=1e-5)


def test_fingerprint_tells_methods_apart(sets, fitted):
    prints = {base: m.fingerprint() for base, m in fitted.items()}
    assert len(set(prints.values())) == len(prints)
    other_seed = create_method("noise@0.3", TINY).fit(sets, seed=1)
    assert other_seed.fingerprint() != fitted["noise"].fingerprint()


@pytest.mark.parametrize("base", sorted(b for b in METHODS if method_class(b).batch_invariant))
def test_batch_invariance(base, sets, fitted):
    """A clip's output does not depend on which other videos are transformed with it."""
    method = fitted[base]
    for name in ("actions", "untrimmed", "privacy_videos"):
        fs = sets[name]
        whole = method.transform(fs)
        rows = np.array([0, 3, len(fs) - 1])
        alone = method.transform(fs.subset(rows))
        single = method.transform(fs.subset([rows[1]]))
        for kind in fs.arrays:
            for k, row in enumerate(rows):
                np.testing.assert_allclose(alone.kind(kind)[k], whole.kind(kind)[row], rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(single.kind(kind)[0], whole.kind(kind)[rows[1]], rtol=1e-4, atol=1e-5)


def test_paper_batch_is_not_batch_invariant(sets, fitted):
    """The released form attends across a mini-batch: its output moves with its companions (why it
    is for comparison only). The fitted adapter is perturbed so its attention branch is non-zero."""
    import torch

    method = fitted["paper_batch"]
    with torch.no_grad():
        for p in method.model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    fs = sets["actions"]
    whole = method.transform(fs).kind("clips")[3]
    alone = method.transform(fs.subset([3])).kind("clips")[0]
    assert not np.allclose(whole, alone, atol=1e-4)


class _Spy(Method):
    seen_columns: list = []

    def _fit(self, sets, seed, checkpoint_dir):
        _Spy.seen_columns = [set(fs.records.columns) for fs in sets.values()]
        _Spy.seen_splits = set().union(*(set(fs.records["split"]) for fs in sets.values()))

    def _transform_kind(self, kind, items, ids):
        return items

    def state(self):
        return {}

    def set_state(self, state):
        pass


def test_label_free_methods_never_see_private_labels_or_test_rows(sets):
    _Spy("spy").fit(sets)
    for columns in _Spy.seen_columns:
        assert not columns & set(PRIVATE_COLUMNS)
    assert _Spy.seen_splits == {"train", "val"}
    labelled = fit_view(sets, private_labels=True)
    assert set(ATTRIBUTES) <= set(labelled["privacy_videos"].records.columns)
    assert not any(method_class(m).needs_private_labels for m in ("paper", "paper_batch", "noise", "identity"))


def test_bad_names_and_dirs(tmp_path, sets):
    with pytest.raises(ModelError, match="unknown method"):
        create_method("dropout")
    with pytest.raises(ModelError, match="noise@<scale>"):
        create_method("noise")
    with pytest.raises(ModelError, match="takes no argument"):
        create_method("paper@2")
    with pytest.raises(ModelError, match="no saved method"):
        load_method(tmp_path)
    method = create_method("identity")
    with pytest.raises(ModelError, match="before fit"):
        method.transform(sets["actions"])
    fitted = create_method("identity").fit(sets)
    narrow = sets["actions"].with_arrays({k: [a[:, :4] for a in v] for k, v in sets["actions"].arrays.items()})
    with pytest.raises(ModelError, match="width"):
        fitted.transform(narrow)


def test_legacy_adapter_directory_loads_as_paper(tmp_path, sets):
    from latentanon.methods.aam import AAM, save_adapter

    model = AAM(16, AdapterConfig(blocks=1, heads=2))
    save_adapter(model, tmp_path)
    method = load_method(tmp_path)
    assert method.name == "paper"
    _all_close(method.transform(sets["actions"]), sets["actions"])  # identity-initialised


def test_train_method_writes_a_loadable_method(tmp_path, sets):
    from latentanon.methods.fitting import train_method

    train = replace(TINY, method="paper")
    method, summary = train_method("paper", train, "unused", tmp_path / "aam", tmp_path / "report", sets=sets)
    assert summary["method"] == "paper" and summary["best_epoch"] >= 1
    assert (tmp_path / "report" / "history.json").exists() and (tmp_path / "aam" / "heads.safetensors").exists()
    assert load_method(tmp_path / "aam").fingerprint() == method.fingerprint()


def test_rotation_control_keeps_every_distance(sets, fitted):
    fs = sets["privacy_videos"]
    rotated = fitted["rotation"].transform(fs)
    a, b = fs.kind("static")[0], fs.kind("static")[1]
    ra, rb = rotated.kind("static")[0], rotated.kind("static")[1]
    np.testing.assert_allclose(np.linalg.norm(ra - rb), np.linalg.norm(a - b), rtol=1e-5)
    assert not np.allclose(ra, a)


def test_fresh_noise_comes_from_the_os_unless_reproducible():
    method = create_method("identity")
    assert not method.reproducible_noise
    assert method.noise_rng("v", "clips").random() != method.noise_rng("v", "clips").random()
    method.reproducible_noise = True
    assert method.noise_rng("v", "clips").random() == method.noise_rng("v", "clips").random()


def test_reproducible_noise_is_a_copy_and_leaves_the_method_as_it_was(sets):
    fs = sets["privacy_videos"]
    method = create_method("noise@0.3").fit(sets, seed=0)
    info = dict(method.info)
    keyed = method.with_reproducible_noise(7)
    assert keyed is not method and keyed.reproducible_noise and keyed.noise_key == 7
    # the original still draws fresh noise from the OS, with its own key and facts
    assert not method.reproducible_noise and method.noise_key == 0 and method.info == info
    assert not np.allclose(method.transform(fs).kind("static")[0], method.transform(fs).kind("static")[0])
    np.testing.assert_array_equal(keyed.transform(fs).kind("static")[0], keyed.transform(fs).kind("static")[0])
    # another key is another copy; the first keeps its key
    other = keyed.with_reproducible_noise(8)
    assert keyed.noise_key == 7 and other.noise_key == 8
    assert keyed.fingerprint() == method.fingerprint()  # the same learned state
    keyed.info["touched"] = True
    assert "touched" not in method.info
    # a method without fresh randomness: the copy transforms exactly as the original
    rotation = create_method("rotation").fit(sets, seed=0)
    copy = rotation.with_reproducible_noise(3)
    assert copy is not rotation and not copy.reproducible_noise and rotation.noise_key == 0
    np.testing.assert_array_equal(copy.transform(fs).kind("static")[0], rotation.transform(fs).kind("static")[0])
