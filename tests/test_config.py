import dataclasses
from pathlib import Path

import pytest

from latentanon.config import ConfigError, Layout, Params, load_params, params_from_dict

ROOT = Path(__file__).resolve().parents[1]


def test_params_files_are_complete_and_typed():
    for name in ("params.yaml", "params.smoke.yaml"):
        params = load_params(ROOT / name)
        assert isinstance(params, Params)
        # every section is spelled out in the file, so a reader sees every knob
        import yaml

        on_disk = yaml.safe_load((ROOT / name).read_text())
        assert set(on_disk) == set(params.to_dict())


def test_unknown_key_is_rejected_with_its_name():
    with pytest.raises(ConfigError, match="data.nope"):
        params_from_dict({"data": {"nope": 1}})


def test_wrong_type_is_rejected():
    with pytest.raises(ConfigError, match="data.seed"):
        params_from_dict({"data": {"seed": "zero"}})


def test_overrides_are_parsed_as_yaml_scalars():
    params = params_from_dict({}, ["data.root=/tmp/x", "data.seed=7", "train.adapter.mlp=false"])
    assert params.data.root == "/tmp/x" and params.data.seed == 7 and params.train.adapter.mlp is False


def test_config_is_frozen():
    params = Params()
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.data.seed = 3  # type: ignore[misc]


def test_layout_places_outputs_under_workdir(tmp_path):
    params = params_from_dict({"paths": {"workdir": str(tmp_path)}})
    layout = Layout.from_params(params)
    assert layout.data_root == tmp_path / "data" / "benchmark"
    assert layout.features_uri == str(tmp_path / "features")


def test_layout_names_the_trained_method_folder_by_what_it_holds(tmp_path):
    layout = Layout.from_params(params_from_dict({"paths": {"workdir": str(tmp_path)}}))
    assert layout.method_dir == tmp_path / "models" / "method"


def test_a_params_file_with_the_old_bias_gap_key_loads_with_a_warning(tmp_path):
    """gate.bias_aam_gap_key (an earlier release) is read as gate.bias_trained_gap_key, for one release."""
    import yaml

    tree = yaml.safe_load((ROOT / "params.yaml").read_text())
    del tree["gate"]["bias_trained_gap_key"]
    tree["gate"]["bias_aam_gap_key"] = "bias.aam.gap"  # as an earlier release's params.yaml had it
    old = tmp_path / "params.yaml"
    old.write_text(yaml.safe_dump(tree))
    with pytest.warns(DeprecationWarning, match="gate.bias_aam_gap_key is deprecated.*gate.bias_trained_gap_key"):
        params = load_params(old)
    assert params.gate.bias_trained_gap_key == "bias.aam.gap"  # the gate reads it as bias.trained.gap
    assert "bias_aam_gap_key" not in params.to_dict()["gate"]  # written back under the new name only
    with pytest.warns(DeprecationWarning):  # an override with the old name too
        overridden = params_from_dict({}, ["gate.bias_aam_gap_key=bias.trained.gap"])
    assert overridden.gate.bias_trained_gap_key == "bias.trained.gap"
    with pytest.raises(ConfigError, match="set only gate.bias_trained_gap_key"):
        params_from_dict({"gate": {"bias_aam_gap_key": "x", "bias_trained_gap_key": "y"}})


def test_bad_override_syntax():
    with pytest.raises(ConfigError):
        params_from_dict({}, ["data.root"])


def test_head_inputs_are_named_forms_each_given_once():
    both = params_from_dict({"evaluate": {"head_inputs": ["standardised", "principal_axes"]}})
    assert both.evaluate.head_inputs == ("standardised", "principal_axes")
    for bad, message in (([], "at least one"), (["standardised", "standardised"], "once"), (["whitened"], "whitened")):
        with pytest.raises(ConfigError, match=message):
            params_from_dict({"evaluate": {"head_inputs": bad}})
