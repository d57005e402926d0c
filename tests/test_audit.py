"""``latentanon audit``: the attack suite on a user's labelled feature store, with a report."""
from __future__ import annotations

import contextlib
import io
import json

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
        code = cli.main(["audit", "--features", str(root / "features"), "--out", str(root / "out"), "--seeds", "0",
                         "--bootstrap", "100"])
    return code, root, stdout.getvalue(), stderr.getvalue()


def test_audit_finds_the_planted_leak_and_writes_a_report(audited):
    code, root, stdout, stderr = audited
    assert code == 0
    # the result is on stdout (a script can capture it); stderr carries diagnostics only
    assert stdout.startswith("[audit] report: ") and str(root / "out") in stdout and "cMAP" in stdout
    assert "[audit]" not in stderr
    result = json.loads((root / "out" / "audit.json").read_text())
    assert set(result["scopes"]) == {"static", "moving"}
    for scope, block in result["scopes"].items():
        # the planted attributes are read well above chance, and the interval says so
        assert block["cmap_above_chance"]["low"] > 0.15, (scope, block["cmap_above_chance"])
        assert block["paper_protocol"]["cmap"]["mean"] > block["chance"]["mean"]
        assert set(block["attributes"]) == {"skin_tone", "gender", "clothing", "face"}
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
