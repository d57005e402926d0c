"""``latentanon audit``: the attack suite on a user's labelled feature store, with a report."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from latentanon import cli
from latentanon.errors import EXIT_BAD_INPUT, EXIT_USAGE, DataError
from latentanon.evaluation.audit import audit, labelled_sets
from latentanon.features.store import write_feature_set
from test_privacy import private_feature_set


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """The CLI run once on a store with a planted leak (seed 0, 100 resamples: lean)."""
    root = tmp_path_factory.mktemp("audit")
    write_feature_set(str(root / "features"), private_feature_set(n_identities=24, signal=1.5))
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli.main(
            [
                "audit",
                "--features",
                str(root / "features"),
                "--out",
                str(root / "out"),
                "--seeds",
                "0",
                "--bootstrap",
                "100",
            ]
        )
    return code, root, stdout.getvalue(), stderr.getvalue()


def test_audit_finds_the_planted_leak_and_writes_a_report(audited):
    code, root, stdout, stderr = audited
    assert code == 0
    # the result is on stdout (a script can capture it); stderr carries diagnostics only
    assert stdout.startswith("[audit] report: ") and str(root / "out") in stdout and "cMAP" in stdout
    assert "[audit]" not in stderr
    result = json.loads((root / "out" / "audit.json").read_text())
    assert set(result["scopes"]) == {"static", "moving", "moving_video_mean"}
    assert "snippets" in result["skipped"]["snippets_video_mean"]  # the store holds no snippets
    assert "rerelease" not in result  # no method given
    for scope, block in result["scopes"].items():
        # the planted attributes are read well above chance, and the interval says so
        assert block["cmap_above_chance"]["low"] > 0.15, (scope, block["cmap_above_chance"])
        assert set(block["attributes"]) == {"skin_tone", "gender", "clothing", "face"}
    for scope in ("static", "moving"):
        block = result["scopes"][scope]
        assert block["paper_protocol"]["cmap"]["mean"] > block["chance"]["mean"]
    report = (root / "out" / "audit.md").read_text()
    assert "cMAP - chance" in report and "gender" in report and "paper protocol" in report


def test_audit_of_features_without_a_leak_stays_near_chance(audited, tmp_path):
    uri = tmp_path / "features"
    write_feature_set(str(uri), private_feature_set(n_identities=24, signal=0.0))
    audit(str(uri), tmp_path / "out", seeds=[0], n_resamples=100)
    clean = json.loads((tmp_path / "out" / "audit.json").read_text())["scopes"]["static"]["cmap_above_chance"]
    leaky = json.loads((audited[1] / "out" / "audit.json").read_text())["scopes"]["static"]["cmap_above_chance"]
    # AP on few test items sits a little above class prevalence even for a blind attacker (measured
    # about +0.05 here), far below the planted leak
    assert clean["mean"] < 0.12 and clean["high"] < leaky["low"]


def test_audit_needs_private_labels_and_valid_seeds(audited, tmp_path):
    fs = private_feature_set(name="actions", n_identities=8)
    fs.records = fs.records.drop(columns=["skin_tone", "gender", "clothing", "face"])
    write_feature_set(str(tmp_path / "plain"), fs)
    with pytest.raises(DataError, match="private-attribute labels"):
        labelled_sets(str(tmp_path / "plain"))
    assert cli.main(["audit", "--features", str(tmp_path / "plain"), "--out", str(tmp_path / "o")]) == EXIT_BAD_INPUT
    assert cli.main(["audit", "--features", str(audited[1] / "features"), "--seeds", "a,b"]) == EXIT_USAGE


def test_audit_attacks_a_methods_re_releases_only_when_they_differ(tmp_path):
    from latentanon.evaluation.audit import audit_sets
    from latentanon.evaluation.privacy import ATTACKER_GRID
    from latentanon.methods.registry import create_method, load_method

    fs = private_feature_set(n_identities=16, signal=1.5, kinds=("clips",))
    sets = {"privacy_videos": fs}
    noise = create_method("noise@3").fit(sets, seed=0)
    noise.save(tmp_path / "noise")
    linear = tuple(spec for spec in ATTACKER_GRID if spec.name == "linear")  # fast; the scopes are the point
    result = audit_sets(sets, [0], n_resamples=100, method=load_method(tmp_path / "noise"), releases=(16,), grid=linear)
    rotated = audit_sets(
        sets, [0], n_resamples=100, method=create_method("rotation").fit(sets, seed=0), releases=(16,), grid=linear
    )
    assert result["rerelease"] == {"method": "noise@3", "releases": [16], "deterministic": False}
    for scope, reference in (("rerelease16", "moving"), ("rerelease16_video_mean", "moving_video_mean")):
        block = result["scopes"][scope]
        assert block["reference"] == reference
        assert np.isfinite(block["normalized_leakage"]["mean"])
    assert rotated["rerelease"]["deterministic"] is True
    assert not any(s.startswith("rerelease") for s in rotated["scopes"])
