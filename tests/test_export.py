"""SavedModel export: files, versions, reload in a TensorFlow-only process, op hygiene, signatures, serving protos."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfstyle import configs, export, loading, registry, spectral_ops
from conftest import (ALL_TINY, REPO, TINY_RATE as SAMPLE_RATE, assert_one_line_usage_error, chirp,
                      harmonic_tone, run_transfer, tiny_model)

# Run in a fresh interpreter that imports TensorFlow only: custom ops (tensorflow-io) or tfstyle code inside a
# SavedModel would fail here, as they would in TF Serving.
TF_ONLY_CHECK = r"""
import json, sys
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry

path, inputs_path, outputs_path = sys.argv[1:4]
denylist = {"ReadFile", "WriteFile", "PrintV2", "Print", "PyFunc", "EagerPyFunc"}
proto = saved_model_pb2.SavedModel()
with open(path + "/saved_model.pb", "rb") as f:
    proto.ParseFromString(f.read())
nodes = [node for graph in proto.meta_graphs for node in graph.graph_def.node]
nodes += [node for graph in proto.meta_graphs for function in graph.graph_def.library.function
          for node in function.node_def]
ops = {node.op for node in nodes}
# TensorFlow's CPU kernel for a dilated Conv2DBackpropInput exists only in its oneDNN path (not every CPU or server).
onednn_only = sorted({node.op for node in nodes
                      if node.op == "Conv2DBackpropInput" and max(node.attr["dilations"].list.i, default=1) > 1})
functions = {f.signature.name for g in proto.meta_graphs for f in g.graph_def.library.function}
unknown = sorted(op for op in ops if op_def_registry.get(op) is None and op not in functions)
loaded = tf.saved_model.load(path)
inputs = dict(np.load(inputs_path))
outputs = {k: v.numpy() for k, v in loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in inputs.items()}).items()}
np.savez(outputs_path, **outputs)
print(json.dumps({"unknown_ops": unknown, "denied_ops": sorted(ops & denylist), "onednn_only_ops": onednn_only,
                  "foreign_modules": sorted(m for m in sys.modules if m.startswith(("tfstyle", "tensorflow_io")))}))
"""


def waveforms(rate=SAMPLE_RATE):
    return np.stack([chirp(0.5, rate, f1=rate / 4), harmonic_tone(0.5, rate)])


def expected_serving_output(name, model, waveform):
    signal = model.signal_config() if hasattr(model, "signal_config") else {"frame_length": 2048, "frame_step": 512}
    log_magnitude = spectral_ops.log_magnitude(spectral_ops.stft_magnitude(
        waveform, frame_length=signal["frame_length"], frame_step=signal["frame_step"]))
    if name in ("random_cnn", "spectrogram"):
        return {"embedding": tf.reduce_mean(model(log_magnitude), axis=1)}
    if name == "style_encoder":
        return {"embedding": model.encode(model.style_features(waveform))}
    if name == "conv_vae":
        return {"embedding": model.encode(log_magnitude)[0]}
    if name in ("speaker_encoder", "timbre_encoder"):
        return {"embedding": model.embed(log_magnitude)}
    return {"embedding": model.encode(log_magnitude)}


def test_export_writes_integer_versions_atomically(exported, tmp_path):
    model, path = exported["conv_ae"]
    assert os.path.basename(path) == "1"
    for part in ("saved_model.pb", "variables/variables.index", f"assets/{loading.INFO_ASSET}"):
        assert os.path.exists(os.path.join(path, part)), part
    again = export.export_saved_model("conv_ae", model, tiny_model("conv_ae")[1], os.path.dirname(path))
    assert os.path.basename(again) == "2"
    assert sorted(os.listdir(os.path.dirname(path))) == ["1", "2"]  # no temporary folder left behind
    info = json.load(open(os.path.join(path, "assets", loading.INFO_ASSET)))
    assert info["sample_rate"] == SAMPLE_RATE and info["frame_length"] == 256 and info["model"] == "conv_ae"
    assert info["feature_layers"] == list(model.feature_layer_names)


def test_random_cnn_export_holds_no_weights(exported):
    _, path = exported["random_cnn"]
    size = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)
    assert size < 1_000_000


@pytest.mark.parametrize("name", sorted(ALL_TINY))
@pytest.mark.slow
def test_reloads_in_a_tensorflow_only_process_with_core_ops_only(name, exported, tmp_path):
    model, path = exported[name]
    rate = 22050 if registry.lookup(name).any_sample_rate else SAMPLE_RATE
    inputs = {"waveform": waveforms(rate)}
    np.savez(tmp_path / "inputs.npz", **inputs)
    completed = subprocess.run([sys.executable, "-c", TF_ONLY_CHECK, path, str(tmp_path / "inputs.npz"),
                                str(tmp_path / "outputs.npz")], capture_output=True, text=True, timeout=300,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"})
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report == {"unknown_ops": [], "denied_ops": [], "onednn_only_ops": [], "foreign_modules": []}
    served = dict(np.load(tmp_path / "outputs.npz"))
    expected = expected_serving_output(name, model, tf.constant(inputs["waveform"]))
    assert sorted(served) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(served[key], expected[key], rtol=1e-4, atol=1e-4)


SIGNATURES = {
    "random_cnn": {"serving_default", "features"},
    "spectrogram": {"serving_default", "features"},
    "conv_ae": {"serving_default", "features", "encode", "decode", "reconstruct"},
    "dilated_conv_ae": {"serving_default", "features", "encode", "decode", "reconstruct"},
    "seq2seq_lstm_ae": {"serving_default", "features", "encode", "decode", "reconstruct"},
    "conv_vae": {"serving_default", "features", "encode", "decode", "reconstruct", "recombine"},
    "style_encoder": {"serving_default", "features", "encode", "decode", "reconstruct"},
    "speaker_encoder": {"serving_default", "features"},
    "timbre_encoder": {"serving_default", "features"},
    "content_encoder": {"serving_default", "features"},
}


@pytest.mark.parametrize("name", sorted(ALL_TINY))
def test_signatures_are_as_documented_and_features_are_differentiable(name, exported):
    model, path = exported[name]
    loaded = loading.LoadedModel(path)
    assert set(loaded.saved_model.signatures) == SIGNATURES[name]
    default = loaded.saved_model.signatures["serving_default"]
    (spec,) = default.structured_input_signature[1].values()
    assert spec.name == "waveform" and spec.dtype == tf.float32 and spec.shape.as_list() == [None, None]
    features_spec = loaded.saved_model.signatures["features"].structured_input_signature[1]["log_magnitude"]
    bins = loaded.info["bins"]
    assert features_spec.shape.as_list() == [None, None, bins]
    x = tf.Variable(tf.random.uniform([2, 12, bins], seed=1))
    with tf.GradientTape() as tape:
        features = loaded.features(x)
        total = tf.add_n([tf.reduce_sum(tf.square(f)) for f in features.values()])
    assert set(features) == set(loaded.feature_layer_names)
    assert float(tf.reduce_max(tf.abs(tape.gradient(total, x)))) > 0


@pytest.mark.parametrize("name", sorted(ALL_TINY))
def test_predict_request_protos_fit_the_signature(name, exported):
    """A tensorflow_serving PredictRequest as a client would build it names and types the inputs the signature
    takes, and the signature runs on the tensors decoded from it."""
    from tensorflow_serving.apis import predict_pb2

    _, path = exported[name]
    loaded = tf.saved_model.load(path)
    signature = loaded.signatures["serving_default"]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = "serving_default"
    rate = 22050 if registry.lookup(name).any_sample_rate else SAMPLE_RATE
    request.inputs["waveform"].CopyFrom(tf.make_tensor_proto(waveforms(rate)))
    specs = signature.structured_input_signature[1]
    assert set(request.inputs) == set(specs)
    for key, tensor_proto in request.inputs.items():
        assert tf.dtypes.as_dtype(tensor_proto.dtype) == specs[key].dtype
    outputs = signature(**{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()})
    assert all(np.all(np.isfinite(v)) for v in outputs.values())


@pytest.mark.slow
def test_broken_or_foreign_saved_models_are_one_line_errors(exported, tmp_path, content_wav, style_wav):
    _, path = exported["conv_ae"]
    half = tmp_path / "half"
    half.mkdir()
    (half / "saved_model.pb").write_bytes(open(os.path.join(path, "saved_model.pb"), "rb").read()[:100])
    os.makedirs(half / "assets")
    (half / "assets" / loading.INFO_ASSET).write_text(open(os.path.join(path, "assets", loading.INFO_ASSET)).read())
    foreign = tmp_path / "foreign"
    tf.saved_model.save(tf.Module(), str(foreign))
    cases = {str(half): "cannot load SavedModel", str(foreign): "not one exported by tfstyle",
             str(tmp_path / "empty_dir"): "no such SavedModel folder"}
    for model, message in cases.items():
        completed = run_transfer(f"--model={model}", f"--content={content_wav}", f"--style={style_wav}",
                                 f"--output={tmp_path / 'out.wav'}", "--steps=1")
        assert_one_line_usage_error(completed, message)


def test_style_from_all_four_conv_ae_layers_optimises_stably(exported):
    """The original work could not optimise with style beyond the first layer; per-layer normalisation must."""
    from tfstyle import configs, transfer_lib

    _, path = exported["conv_ae"]
    loaded = loading.LoadedModel(path)
    content = spectral_ops.log_magnitude(spectral_ops.stft_magnitude(chirp(0.5, SAMPLE_RATE, f1=2000.0),
                                                                     frame_length=256, frame_step=64))
    style = spectral_ops.log_magnitude(spectral_ops.stft_magnitude(harmonic_tone(0.5, SAMPLE_RATE),
                                                                   frame_length=256, frame_step=64))
    layers = tuple((f"conv{i}", 1.0) for i in range(1, 5))
    result = transfer_lib.transfer_spectrogram(loaded, content, style, configs.TransferConfig(steps=40, style_layers=layers))
    totals = np.array([losses["total_loss"] for losses in result.history])
    assert np.all(np.isfinite(totals))
    assert totals[-1] < 0.5 * totals[0]
    # Adam's first step may overshoot: 4 of 100 random initialisations rose at step 1 (by up to 1.7x) and then
    # fell like the rest. Divergence would keep rising, so from step 3 on the loss must stay below the start.
    assert totals[3:].max() < totals[0]


SHIPPED = sorted(d for d in os.listdir(os.path.join(REPO, "saved_models"))
                 if os.path.isdir(os.path.join(REPO, "saved_models", d)))


def test_the_whole_zoo_ships_and_models_config_lists_it():
    assert SHIPPED == sorted(ALL_TINY)
    with open(os.path.join(REPO, "saved_models", "models.config")) as f:
        assert f.read() == export.models_config(os.path.join(REPO, "saved_models"))
    size = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(os.path.join(REPO, "saved_models"))
               for f in files)
    assert size < 50_000_000


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.slow
def test_shipped_model_serves_in_a_tensorflow_only_process(name, tmp_path):
    path = loading.shipped_model_path(name)
    loaded = loading.LoadedModel(path)
    inputs = {"waveform": waveforms(loaded.info["sample_rate"] or 22050)}  # the random CNN takes any rate
    np.savez(tmp_path / "inputs.npz", **inputs)
    completed = subprocess.run([sys.executable, "-c", TF_ONLY_CHECK, path, str(tmp_path / "inputs.npz"),
                                str(tmp_path / "outputs.npz")], capture_output=True, text=True, timeout=300,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"})
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == {
        "unknown_ops": [], "denied_ops": [], "onednn_only_ops": [], "foreign_modules": []}
    served = dict(np.load(tmp_path / "outputs.npz"))
    # The in-memory Keras model, rebuilt from the exported config and the SavedModel's own variables.
    spec = registry.lookup(name)
    model = registry.build_model(name, configs.from_json(spec.config_class, json.dumps(loaded.info["config"])))
    if model.EXPORTS_WEIGHTS:
        tf.train.Checkpoint(model=model).read(os.path.join(path, "variables", "variables")) \
            .assert_existing_objects_matched().expect_partial()
    expected = expected_serving_output(name, model, tf.constant(inputs["waveform"]))
    assert sorted(served) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(served[key], value.numpy(), rtol=1e-4, atol=1e-4)
    assert set(loaded.saved_model.signatures) == SIGNATURES[name]


def test_readme_rest_request_body_fits_the_signature(exported):
    """The README's REST :predict body (columnar "inputs") runs through serving_default as TF Serving would."""
    body = json.loads(json.dumps({"signature_name": "serving_default",
                                  "inputs": {"waveform": (0.1 * np.sin(np.arange(16000) / 10)).reshape(1, -1).tolist()}}))
    _, path = exported["conv_ae"]
    signature = tf.saved_model.load(path).signatures[body["signature_name"]]
    outputs = signature(**{k: tf.constant(v, tf.float32) for k, v in body["inputs"].items()})
    assert list(outputs) == ["embedding"] and outputs["embedding"].shape[0] == 1


@pytest.mark.parametrize("name", ["conv_ae", "dilated_conv_ae"])
def test_transfer_through_a_loaded_model_with_style_and_content_on_one_layer(name, exported):
    """Two loss terms on one layer of a loaded dilated_conv_ae once broke its gradient (Grappler shape folding)."""
    from tfstyle import transfer_lib

    _, path = exported[name]
    loaded = loading.LoadedModel(path)
    content = spectral_ops.log_magnitude(spectral_ops.stft_magnitude(chirp(0.5, SAMPLE_RATE, f1=2000.0),
                                                                     frame_length=256, frame_step=64))
    style = spectral_ops.log_magnitude(spectral_ops.stft_magnitude(harmonic_tone(0.6, SAMPLE_RATE),
                                                                   frame_length=256, frame_step=64))
    config = configs.TransferConfig(steps=3, content_weight=1.0, style_layers=(("conv1", 1.0),),
                                    content_layers=(("conv1", 1.0),))
    result = transfer_lib.transfer_spectrogram(loaded, content, style, config)
    assert np.isfinite(result.history[-1]["total_loss"])


@pytest.mark.slow
def test_recombining_model_writes_the_content_files_rate(exported, tmp_path):
    import soundfile

    _, path = exported["conv_vae"]  # works at 8 kHz
    content = tmp_path / "content.wav"
    soundfile.write(content, chirp(0.5, 16000), 16000)
    output = tmp_path / "out.wav"
    completed = run_transfer(f"--model={path}", f"--content={content}", f"--style={content}", f"--output={output}",
                             "--griffin_lim_iters=2")
    assert completed.returncode == 0, completed.stderr
    assert "working at 8000 Hz" in completed.stderr and "resampled to 16000 Hz" in completed.stderr
    audio, rate = soundfile.read(output)
    assert rate == 16000 and len(audio) == 8000
    report = json.loads(output.with_suffix(".json").read_text())
    assert report["working_sample_rate"] == 8000 and "steps" not in report["settings"]


def test_export_records_the_training_split(tmp_path):
    model, config = tiny_model("conv_ae")
    data_config = configs.DataConfig(sample_rate=SAMPLE_RATE, frame_length=256, frame_step=64,
                                     validation_fraction=0.5, seed=7, label_column="speaker")
    path = export.export_saved_model("conv_ae", model, config, str(tmp_path / "conv_ae"), data_config=data_config)
    assert loading.LoadedModel(path).info["split"] == {"layout": "auto", "label_column": "speaker",
                                                       "validation_fraction": 0.5, "seed": 7}


@pytest.mark.parametrize("name", sorted(ALL_TINY))
def test_every_signature_has_the_same_output_keys_in_every_model(name, exported):
    from tfstyle.models.base import SIGNATURE_OUTPUTS

    _, path = exported[name]
    loaded = tf.saved_model.load(path)
    for signature, function in loaded.signatures.items():
        keys = set(function.structured_outputs)
        if signature == "features":
            assert keys == set(loading.LoadedModel(path).feature_layer_names)
        else:
            expected = set(SIGNATURE_OUTPUTS[signature])
            assert expected <= keys <= expected | {"code_log_variance"}, (signature, keys)


def test_an_export_with_the_old_output_keys_still_reads(tmp_path):
    """Version 1 exports named outputs per model (conv_vae's reconstruct gave "log_mel"); they are renamed."""
    module = tf.Module()
    module.reconstruct = tf.function(lambda log_magnitude: {"log_mel": 2.0 * log_magnitude},
                                     input_signature=[tf.TensorSpec([None, None, 5], tf.float32)])
    module.features = tf.function(lambda log_magnitude: {"conv": log_magnitude},
                                  input_signature=[tf.TensorSpec([None, None, 5], tf.float32)])
    path = tmp_path / "1"
    tf.saved_model.save(module, str(path))
    os.makedirs(path / "assets", exist_ok=True)
    (path / "assets" / loading.INFO_ASSET).write_text(json.dumps({
        "model": "conv_vae", "feature_layers": ["conv"], "signatures": ["features", "reconstruct"],
        "sample_rate": 8000, "frame_length": 8, "frame_step": 4}))
    outputs = loading.LoadedModel(str(tmp_path)).signature("reconstruct")(tf.ones([1, 2, 5]))
    assert list(outputs) == ["reconstruction"] and float(tf.reduce_sum(outputs["reconstruction"])) == 20.0


def test_exports_record_feature_roles_and_transfer_takes_its_default_layers_from_them(exported, tmp_path):
    import shutil

    from tfstyle import transfer_lib

    with open(os.path.join(exported["conv_vae"][1], "assets", loading.INFO_ASSET)) as f:
        assert set(json.load(f)["feature_roles"].values()) == {"content"}  # the content VAE's encoder
    # A conv_ae export whose layers are marked apart: the style and content losses go to their own layers.
    _, path = exported["conv_ae"]
    marked = tmp_path / "1"
    shutil.copytree(path, marked)
    info_path = marked / "assets" / loading.INFO_ASSET
    info = json.loads(info_path.read_text())
    assert info["feature_roles"] == {name: "style" for name in info["feature_layers"]}
    info["feature_roles"].update(conv3="content", conv4="content")
    info_path.write_text(json.dumps(info))
    content = spectral_ops.log_magnitude_spectrogram(chirp(0.5, SAMPLE_RATE), frame_length=256, frame_step=64)
    optimiser = transfer_lib.SpectrogramOptimiser(loading.LoadedModel(str(marked)), content, content.shape,
                                                  configs.TransferConfig(), tf.float32)
    assert sorted(optimiser.style_weights) == ["conv1", "conv2"]
    assert sorted(optimiser.content_weights) == ["conv3", "conv4"]
    del info["feature_roles"]  # an export from before roles: its model's, one role for every layer
    info_path.write_text(json.dumps(info))
    assert set(loading.LoadedModel(str(marked)).feature_roles().values()) == {"style"}
