"""The train stage's work for any method: load the sets it may learn from, fit, save, report."""

from __future__ import annotations

from pathlib import Path

from latentanon._files import write_json_atomic
from latentanon.errors import StoreError
from latentanon.features.featureset import FeatureSet
from latentanon.methods.base import Method
from latentanon.methods.config import TrainConfig
from latentanon.methods.registry import create_method
from latentanon.tasks.specs import TRAINING_SETS

PRIVACY_SETS = ("privacy_videos", "privacy_images")


def load_fit_sets(features_uri: str) -> dict[str, FeatureSet]:
    """Every stored set a method may fit on: the task sets and the privacy sets. Private labels
    are dropped later (``Method.fit``) for methods that do not declare them."""
    from latentanon.features.store import list_feature_sets, load_feature_set

    available = set(list_feature_sets(features_uri))
    names = [n for n in (*TRAINING_SETS, *PRIVACY_SETS) if n in available]
    if not any(n in TRAINING_SETS for n in names):
        raise StoreError(
            f"{features_uri}: none of the training feature sets {sorted(TRAINING_SETS)} is in the store "
            f"(found {sorted(available)})"
        )
    return {name: load_feature_set(features_uri, name) for name in names}


def train_method(
    name: str,
    train_cfg: TrainConfig,
    features_uri: str,
    method_dir,
    report_dir,
    sets: dict[str, FeatureSet] | None = None,
) -> tuple[Method, dict]:
    """Fit method ``name`` on the stored features, save it to ``method_dir``, write its history
    (and loss curves, co-trained heads for the AAM methods) under ``report_dir``."""
    method_dir, report_dir = Path(method_dir), Path(report_dir)
    sets = sets if sets is not None else load_fit_sets(features_uri)
    method = create_method(name, train_cfg)
    method.fit(sets, seed=train_cfg.seed, checkpoint_dir=method_dir / "checkpoints")
    method.info.update(
        {
            "features_uri": str(features_uri),
            "encoder": {n: fs.meta.get("encoder", fs.meta.get("encoder_id", "")) for n, fs in sets.items()},
        }
    )
    method.save(method_dir)
    summary = {
        "method": method.name,
        "method_dir": str(method_dir),
        "fingerprint": method.fingerprint(),
        "needs_private_labels": method.needs_private_labels,
        "sets": {n: len(fs) for n, fs in sets.items()},
    }
    history = getattr(method, "history", None)
    if history:
        from latentanon.methods.training import plot_history, save_heads

        write_json_atomic(report_dir / "history.json", history)
        plot_history(history, report_dir / "loss_curves.png")
        # the AAM methods' co-trained task heads; methods without any have none or None here
        heads = getattr(method, "heads", None)
        if heads is not None:
            save_heads(heads, history["heads"], method_dir)
        summary.update(
            {
                "epochs": len(history["epoch"]),
                "best_epoch": history.get("best_epoch"),
                "best_val_total": history.get("best_score"),
                "seconds": round(history.get("seconds", 0.0), 2),
                "seen_tasks": sorted(heads.keys()) if heads is not None else [],
                "last": {k: v[-1] for k, v in history.items() if isinstance(v, list) and v and k != "epoch"},
            }
        )
    else:
        report_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(report_dir / "method.json", {**method.description(), "info": method.info})
    return method, summary
