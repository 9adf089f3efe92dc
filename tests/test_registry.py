import dataclasses

import pytest

from tfstyle import configs, registry
from tfstyle.errors import InputError


def test_random_cnn_is_registered_and_built_with_overrides():
    assert "random_cnn" in registry.list_models()
    model = registry.build_model("random_cnn", n_filters=8, kernel_width=3)
    assert (model.n_filters, model.kernel_width) == (8, 3)


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(InputError, match="unknown model 'nope'; known models: .*random_cnn"):
        registry.build_model("nope")


def test_config_type_is_checked():
    with pytest.raises(TypeError, match="RandomCNNConfig"):
        registry.build_model("random_cnn", config=configs.TransferConfig())


def test_duplicate_registration_is_refused():
    with pytest.raises(KeyError, match="already registered"):
        registry.register_model("random_cnn", configs.RandomCNNConfig)(object)


@pytest.mark.parametrize("config", [configs.RandomCNNConfig(n_filters=12, seed=3),
                                    configs.TransferConfig(steps=7, style_layers=(("conv", 0.5),))])
def test_configs_round_trip_through_json(config):
    rebuilt = configs.from_json(type(config), configs.to_json(config))
    assert dataclasses.asdict(rebuilt) == dataclasses.asdict(config)


def test_config_validation():
    with pytest.raises(InputError, match="unknown_field"):
        configs.from_json(configs.RandomCNNConfig, '{"unknown_field": 1}')
    with pytest.raises(InputError, match="n_filters must be a positive integer"):
        configs.RandomCNNConfig(n_filters=0)
    with pytest.raises(InputError, match="steps must be a positive integer"):
        configs.TransferConfig(steps=-1)
    with pytest.raises(InputError, match="init"):
        configs.TransferConfig(init="silence")
