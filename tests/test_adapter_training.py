"""Adapter training: seeded, resumable, val-only selection, unseen tasks, apply, and behaviour."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from latentanon.errors import DataError
from latentanon.features.featureset import FeatureSet
from latentanon.methods.aam import AAM
from latentanon.methods.apply import anonymize_feature_set
from latentanon.methods.config import AdapterConfig, LossWeights, PrivacyConfig, TaskWeights, TrainConfig
from latentanon.methods.losses import nt_xent
from latentanon.methods.training import CHECKPOINT_NAME, fit_adapter, fit_adapter_with_heads
from latentanon.tasks.scoring import score_task

SMALL = TrainConfig(adapter=AdapterConfig(blocks=1, heads=2), lr=1e-2, batch_size=64, device="cpu")


def synthetic_sets(
    seed: int = 0, dim: int = 32, ids: tuple[int, int, int] = (24, 8, 8), n_classes: int = 4
) -> dict[str, FeatureSet]:
    """Features = action part + private attribute part (+ per-frame pose and noise).

    Moving clips and snippets carry action + attribute; static clips (one frame) carry the
    attribute plus that frame's pose, no action. Identities split train / val / test.
    """
    rng = np.random.default_rng(seed)
    action = rng.normal(size=(n_classes, dim))
    attribute = rng.normal(size=(2, dim))
    pose = rng.normal(size=(8, dim)) / np.sqrt(8)
    anomaly = 2 * rng.normal(size=dim)
    splits = {"train": range(ids[0]), "val": range(ids[0], ids[0] + ids[1]), "test": range(ids[0] + ids[1], sum(ids))}

    def noise(*shape):
        return 0.3 * rng.normal(size=shape)

    def static(a):
        return (attribute[a] + 1.5 * rng.normal(size=(4, 8)) @ pose + 0.1 * rng.normal(size=(4, dim))).astype(
            np.float32
        )

    tables = {name: ([], {"static": []}) for name in ("actions", "untrimmed", "anomaly")}
    for split, identities in splits.items():
        for ident in identities:
            a = ident % 2
            base = dict(split=split, identity=ident, gender=a, fps=16, label="")
            rows, arrays = tables["actions"]
            for c in range(n_classes):
                rows.append(dict(base, video_id=f"a{ident}-{c}", label_id=c, frames=48))
                arrays.setdefault("clips", []).append((action[c] + attribute[a] + noise(5, dim)).astype(np.float32))
                arrays["static"].append(static(a))
            rows, arrays = tables["untrimmed"]
            seq, segments = attribute[a] + noise(16, dim), []
            for start in (2, 9):
                c, length = int(rng.integers(n_classes)), int(rng.integers(3, 6))
                seq[start : start + length] += action[c]
                segments.append([float(start), float(start + length), f"c{c}"])
            rows.append(dict(base, video_id=f"u{ident}", label_id=-1, frames=256, segments=segments))
            arrays.setdefault("snippets", []).append(seq.astype(np.float32))
            arrays["static"].append(static(a))
            rows, arrays = tables["anomaly"]
            for flag in (0, 1):
                seq, segments = attribute[a] + 0.5 * action[int(rng.integers(n_classes))] + noise(12, dim), []
                if flag:
                    start = int(rng.integers(0, 9))
                    seq[start : start + 3] += anomaly
                    segments = [[float(start), float(start + 3), "fall"]]
                rows.append(
                    dict(base, video_id=f"n{ident}-{flag}", label_id=-1, frames=192, segments=segments, anomaly=flag)
                )
                arrays.setdefault("snippets", []).append(seq.astype(np.float32))
                arrays["static"].append(static(a))
    return {name: FeatureSet(name, pd.DataFrame(rows), arrays) for name, (rows, arrays) in tables.items()}


def _parameters(model: AAM) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.fixture(scope="module")
def small_sets():
    return synthetic_sets(ids=(6, 3, 3), dim=16, n_classes=3)


def test_fit_is_seeded_and_records_history(small_sets):
    model_a, history = fit_adapter(small_sets, SMALL, LossWeights(), epochs=3, seed=5)
    model_b, _ = fit_adapter(small_sets, SMALL, LossWeights(), epochs=3, seed=5)
    assert torch.equal(_parameters(model_a), _parameters(model_b))
    assert history["epoch"] == [1, 2, 3]
    for key in (
        "train_total",
        "train_latent",
        "train_privacy",
        "train_utility",
        "train_ar",
        "train_tad",
        "train_ad",
        "val_total",
        "val_privacy",
    ):
        assert len(history[key]) == 3, key
    selection = 100.0 * np.array(history["val_latent"]) - np.array(history["val_privacy"])
    assert history["val_selection"] == pytest.approx(selection.tolist())
    assert history["best_epoch"] == 1 + int(np.argmin(selection))
    # training moved the adapter away from the identity
    assert not torch.equal(_parameters(model_a), _parameters(AAM(16, SMALL.adapter)))


def test_interrupted_run_resumes_to_the_same_result(small_sets, tmp_path):
    full, full_history = fit_adapter(small_sets, SMALL, LossWeights(), epochs=4, seed=1, checkpoint_dir=tmp_path / "a")
    fit_adapter(small_sets, SMALL, LossWeights(), epochs=2, seed=1, checkpoint_dir=tmp_path / "b")
    assert torch.load(tmp_path / "b" / CHECKPOINT_NAME, weights_only=True)["epoch"] == 2
    resumed, resumed_history = fit_adapter(
        small_sets, SMALL, LossWeights(), epochs=4, seed=1, checkpoint_dir=tmp_path / "b"
    )
    assert torch.allclose(_parameters(full), _parameters(resumed), atol=1e-6)
    assert resumed_history["epoch"] == [1, 2, 3, 4]
    assert resumed_history["train_total"] == pytest.approx(full_history["train_total"], rel=1e-5)
    # a checkpoint made with other loss weights is not resumed
    other, other_history = fit_adapter(
        small_sets, SMALL, LossWeights(privacy=2.0), epochs=1, seed=1, checkpoint_dir=tmp_path / "b"
    )
    assert other_history["epoch"] == [1]


def test_val_split_never_feeds_gradients(small_sets, tmp_path):
    """Changing the val features changes nothing in the trained weights of the last epoch."""
    shifted = {}
    for name, fs in small_sets.items():
        val = (fs.records["split"] == "val").to_numpy()
        arrays = {k: [a + 3.0 if val[i] else a for i, a in enumerate(v)] for k, v in fs.arrays.items()}
        shifted[name] = FeatureSet(name, fs.records, arrays)
    fit_adapter(small_sets, SMALL, LossWeights(), epochs=2, seed=0, checkpoint_dir=tmp_path / "a")
    fit_adapter(shifted, SMALL, LossWeights(), epochs=2, seed=0, checkpoint_dir=tmp_path / "b")
    last_a = torch.load(tmp_path / "a" / CHECKPOINT_NAME, weights_only=True)
    last_b = torch.load(tmp_path / "b" / CHECKPOINT_NAME, weights_only=True)
    for key, value in last_a["model"].items():
        assert torch.equal(value, last_b["model"][key]), key
    assert last_a["history"]["val_total"] != last_b["history"]["val_total"]


def test_unseen_tasks_get_no_head_and_no_loss(small_sets):
    cfg = replace(SMALL, tasks=TaskWeights(ar=1.0, tad=0.0, ad=0.0))
    _, heads, history = fit_adapter_with_heads(small_sets, cfg, LossWeights(), epochs=1, seed=0)
    assert sorted(heads.keys()) == ["ar"]
    assert "train_ar" in history and "train_tad" not in history and "train_ad" not in history


def test_bad_training_input(small_sets):
    with pytest.raises(DataError, match="no feature sets"):
        fit_adapter({}, SMALL, LossWeights(), epochs=1, seed=0)
    broken = FeatureSet("actions", small_sets["actions"].records.drop(columns=["split"]), small_sets["actions"].arrays)
    with pytest.raises(DataError, match="split"):
        fit_adapter({"actions": broken}, SMALL, LossWeights(), epochs=1, seed=0)


def test_anonymize_feature_set_sequences_and_static_singletons(small_sets):
    torch.manual_seed(0)
    model = AAM(16, AdapterConfig(blocks=1, heads=2))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    fs = small_sets["untrimmed"]
    anon = anonymize_feature_set(model, fs)
    assert anon.records.equals(fs.records) and anon.meta["anonymized"] and anon.meta["adapter_id"]
    with torch.no_grad():
        sequence = model(torch.from_numpy(fs.arrays["snippets"][2])).numpy()
        static = model(torch.from_numpy(fs.arrays["static"][2])[:, None])[:, 0].numpy()
        static_as_sequence = model(torch.from_numpy(fs.arrays["static"][2])).numpy()
    np.testing.assert_allclose(anon.arrays["snippets"][2], sequence, atol=1e-5)
    np.testing.assert_allclose(anon.arrays["static"][2], static, atol=1e-5)
    # each static clip alone, not attending to its siblings
    assert not np.allclose(anon.arrays["static"][2], static_as_sequence, atol=1e-4)
    # the result does not depend on which other videos are anonymized with it
    alone = anonymize_feature_set(model, fs.subset([2]))
    np.testing.assert_allclose(alone.arrays["snippets"][0], anon.arrays["snippets"][2], atol=1e-5)


def _attack_accuracy(fs: FeatureSet) -> float:
    train, test = fs.split("train"), fs.split("test")

    def stack(part):
        counts = [len(a) for a in part.arrays["static"]]
        return np.concatenate(part.arrays["static"]), np.repeat(part.records["gender"].to_numpy(), counts)

    x, y = stack(train)
    attacker = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)).fit(x, y)
    return float(attacker.score(*stack(test)))


@pytest.mark.slow
def test_training_lowers_attribute_leakage_and_keeps_action_recognition():
    """A learned effect, so a margin over seeds: one seed's figure differs between machines
    (measured here 1.0 -> 0.85, 0.85, 0.90 for seeds 0-2; 0.93 for seed 0 on another machine)."""
    sets = synthetic_sets()
    cfg = replace(SMALL, batch_size=512)

    def ar(fs):
        return score_task("ar", fs.split("train"), fs.split("val"), fs.split("test"), seed=0)["value"]

    raw_attack, raw_ar = _attack_accuracy(sets["actions"]), ar(sets["actions"])
    assert raw_attack >= 0.95  # chance is 0.5
    drops = []
    for seed in (0, 1, 2):
        model, history = fit_adapter(sets, cfg, LossWeights(latent_consistency=10.0), epochs=300, seed=seed)
        anonymized = {name: anonymize_feature_set(model, fs) for name, fs in sets.items()}
        drops.append(raw_attack - _attack_accuracy(anonymized["actions"]))
        assert ar(anonymized["actions"]) >= raw_ar - 0.02, (seed, raw_ar)
        assert history["val_privacy"][history["best_epoch"] - 1] > history["val_privacy"][0]
    # a real drop on average (measured mean 0.13), far from chance; no seed makes leakage worse
    assert np.mean(drops) >= 0.05 and min(drops) >= 0.0, drops


def test_train_stage_and_anonymized_store(small_sets, tmp_path):
    from latentanon.features.store import list_feature_sets, load_feature_set, write_feature_set
    from latentanon.methods.apply import anonymize_store
    from latentanon.methods.fitting import train_method
    from latentanon.methods.registry import load_method

    store = tmp_path / "features"
    for fs in small_sets.values():
        write_feature_set(store, fs, videos_per_shard=10)
    cfg = replace(SMALL, epochs=2)
    method, summary = train_method("paper", cfg, str(store), tmp_path / "aam", tmp_path / "reports")
    assert summary["epochs"] == 2 and summary["seen_tasks"] == ["ad", "ar", "tad"]
    for name in ("method.json", "method.safetensors", "heads.safetensors", "heads.json"):
        assert (tmp_path / "aam" / name).exists(), name
    assert (tmp_path / "reports" / "loss_curves.png").stat().st_size > 1000
    assert (tmp_path / "reports" / "history.json").exists()
    loaded = load_method(tmp_path / "aam")
    assert loaded.fingerprint() == method.fingerprint() == summary["fingerprint"]

    result = anonymize_store(tmp_path / "aam", str(store), str(tmp_path / "anon"))
    assert result["shards_written"] == result["shards_kept"] + result["shards_written"] > 0
    assert result["method"] == "paper"
    assert list_feature_sets(tmp_path / "anon") == sorted(small_sets)
    anonymized = load_feature_set(tmp_path / "anon", "actions")
    assert anonymized.meta["method"]["id"] == method.fingerprint()  # the release meta names the method
    expected = anonymize_feature_set(loaded.model, small_sets["actions"])
    np.testing.assert_allclose(anonymized.arrays["clips"][3], expected.arrays["clips"][3], atol=1e-6)
    # a second run resumes: nothing is rewritten
    again = anonymize_store(tmp_path / "aam", str(store), str(tmp_path / "anon"))
    assert again["shards_written"] == 0 and again["shards_kept"] == result["shards_written"]
    # re-running the stage resumes from the final checkpoint instead of training again
    _, rerun = train_method("paper", cfg, str(store), tmp_path / "aam", tmp_path / "reports")
    assert rerun["best_epoch"] == summary["best_epoch"] and rerun["fingerprint"] == summary["fingerprint"]


def test_critic_matches_while_the_adapter_unmatches():
    """Through the critic, one step lowers L_B for the critic's weights and raises it for the adapter's."""
    from latentanon.methods.adapter_batches import _privacy_loss, build_critic

    torch.manual_seed(0)
    critic = build_critic(8, 16)
    first = torch.randn(6, 8, requires_grad=True)
    second = (first.detach() + 0.1 * torch.randn(6, 8)).requires_grad_(True)
    (+_privacy_loss([(first, second)], critic, 0.5)).backward()  # what the training step minimises
    critic_grads = torch.autograd.grad(
        _privacy_loss([(first.detach(), second.detach())], critic, 0.5), list(critic.parameters())
    )
    for param, grad in zip(critic.parameters(), critic_grads):
        assert torch.allclose(param.grad, grad, atol=1e-6)  # the critic descends L_B
    direct = torch.autograd.grad(nt_xent(critic(first), critic(second), 0.5), [first, second])
    assert torch.allclose(first.grad, -direct[0], atol=1e-6)  # the adapter's outputs ascend it
    assert torch.allclose(second.grad, -direct[1], atol=1e-6)


def test_moving_views_enter_the_privacy_loss_only_when_asked(small_sets):
    from latentanon.methods.adapter_batches import batch_losses, split_tensors

    weights = LossWeights(latent_consistency=0.0, utility=0.0, privacy=1.0)
    fs = small_sets["actions"].split("train")

    def privacy(views: str, shift: float) -> float:
        data = {"actions": split_tensors(fs, "clips", "ar", [], fs.dim, "cpu")}
        data["actions"].moving += shift
        cfg = replace(SMALL, privacy=PrivacyConfig(views=views))
        model = AAM(fs.dim, cfg.adapter)
        rows = {"actions": np.arange(len(fs))}
        out = batch_losses(model, torch.nn.ModuleDict(), data, rows, cfg, weights, np.random.default_rng(0))
        assert torch.allclose(out["step"], out["total"])  # no critic: the step is the objective
        return float(out["privacy"].detach())

    assert privacy("static", 0.0) == pytest.approx(privacy("static", 5.0))
    assert privacy("static+moving", 0.0) != pytest.approx(privacy("static+moving", 5.0))


def test_training_with_a_critic_resumes_to_the_same_result(small_sets, tmp_path):
    cfg = replace(SMALL, privacy=PrivacyConfig(critic=True, critic_hidden=8, views="static+moving"))
    full, history = fit_adapter(small_sets, cfg, LossWeights(), epochs=3, seed=2, checkpoint_dir=tmp_path / "a")
    fit_adapter(small_sets, cfg, LossWeights(), epochs=2, seed=2, checkpoint_dir=tmp_path / "b")
    assert torch.load(tmp_path / "b" / CHECKPOINT_NAME, weights_only=True)["critic"]
    resumed, _ = fit_adapter(small_sets, cfg, LossWeights(), epochs=3, seed=2, checkpoint_dir=tmp_path / "b")
    assert torch.allclose(_parameters(full), _parameters(resumed), atol=1e-6)
    assert all(np.isfinite(history["train_privacy"]))


def test_a_diverging_run_stops_and_keeps_its_best_epoch(small_sets):
    cfg = replace(SMALL, lr=1e6)
    model, history = fit_adapter(small_sets, cfg, LossWeights(), epochs=20, seed=0)
    assert history["diverged_at_epoch"] <= 20
    assert len(history["epoch"]) == history["diverged_at_epoch"] - 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_patience_stops_once_the_selection_stops_improving_and_keeps_the_same_best(small_sets):
    # at this learning rate the val selection is best after epoch 1 on every seed tried (0-2)
    cfg = replace(SMALL, lr=0.3)
    full_model, full = fit_adapter(small_sets, cfg, LossWeights(), epochs=8, seed=2)
    model, history = fit_adapter(small_sets, replace(cfg, patience=2), LossWeights(), epochs=8, seed=2)
    best = history["best_epoch"]
    assert history["stopped_early_at_epoch"] == best + 2 < 8
    assert history["epoch"] == list(range(1, best + 3))
    assert history["val_selection"] == pytest.approx(full["val_selection"][: best + 2])
    assert best == 1 + int(np.argmin(full["val_selection"][: best + 2]))
    if full["best_epoch"] == best:
        assert torch.equal(_parameters(model), _parameters(full_model))
