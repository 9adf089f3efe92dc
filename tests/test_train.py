"""The training CLI end to end in subprocesses: every trainable model, resume, tf.distribute, bad input."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile
import tensorflow as tf

from tfstyle import loading
from conftest import REPO, TINY, assert_one_line_usage_error, run_command, write_clips

SIGNAL = {"frame_length": 256, "frame_step": 64}


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    write_clips(folder, speakers=("s1", "s2", "s3"), per_speaker=2)
    return folder


@pytest.fixture(scope="module")
def parallel_dir(tmp_path_factory):
    """The same clip names under every speaker: what content_encoder trains on."""
    folder = tmp_path_factory.mktemp("parallel")
    write_clips(folder, speakers=("s1", "s2", "s3", "s4"), per_speaker=2, parallel=True)
    return folder


def train(*flags):
    return run_command([sys.executable, "-m", "tfstyle.train", *flags])


def tiny_flags(name, data_dir, model_dir, steps):
    return [f"--model={name}", f"--data_dir={data_dir}", f"--model_dir={model_dir}", f"--steps={steps}",
            "--batch_size=2", "--sample_rate=8000", "--clip_seconds=0.5", "--summary_every=1",
            "--validation_every=2", "--checkpoint_every=2", f"--model_config={json.dumps({**SIGNAL, **TINY[name]})}"]


def checkpoint_step(model_dir):
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    return int(latest.rsplit("-", 1)[1])


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.slow
def test_train_two_steps_then_resume_two_more(name, speech_dir, parallel_dir, tmp_path):
    """Every trainable model trains through the CLI; the resume, which is the same code for all, is run for two
    (one per kind of training data), as each run costs TensorFlow's start-up."""
    model_dir = tmp_path / name
    data_dir = parallel_dir if name == "content_encoder" else speech_dir
    first = train(*tiny_flags(name, data_dir, model_dir, steps=2))
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["step"] == 2
    assert checkpoint_step(model_dir) == 2
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model"] == name and config["data"]["sample_rate"] == 8000
    assert os.listdir(model_dir / "train") and os.listdir(model_dir / "validation")
    experiment, resolved = loading.load_training_run(str(model_dir))
    assert experiment.model == name and resolved.model.feature_layer_names and resolved.source == "training_run"
    if name not in ("conv_ae", "content_encoder"):
        return

    second = train(*tiny_flags(name, data_dir, model_dir, steps=4))
    assert second.returncode == 0, second.stderr
    assert "resuming" in second.stderr and "from step 2" in second.stderr
    summary = json.loads(second.stdout)
    assert summary["step"] == 4 and summary["trained_steps"] == 2
    assert checkpoint_step(model_dir) == 4


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(speech_dir, tmp_path):
    completed = train(*tiny_flags("conv_ae", speech_dir, tmp_path / "run", steps=2), "--strategy=mirrored",
                      "--cpu_devices=2")
    assert completed.returncode == 0, completed.stderr
    assert "with 2 replica(s)" in completed.stderr
    assert json.loads(completed.stdout)["step"] == 2


@pytest.mark.slow
def test_multi_worker_strategy_reads_tf_config(speech_dir, tmp_path):
    with socket.socket() as probe:  # a free loopback port for the one worker of this cluster
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    tf_config = {"cluster": {"worker": [f"127.0.0.1:{port}"]}, "task": {"type": "worker", "index": 0}}
    completed = run_command([sys.executable, "-m", "tfstyle.train",
                             *tiny_flags("conv_ae", speech_dir, tmp_path / "run", steps=2),
                             "--strategy=multi_worker_mirrored"], env_overrides={"TF_CONFIG": json.dumps(tf_config)})
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["step"] == 2


@pytest.mark.parametrize("flags, message", [
    (["--model=vgg19"], "unknown model 'vgg19'"),
    (["--model=random_cnn"], "random_cnn has nothing to train"),
    (["--data_dir=/no/such/folder"], "data folder does not exist: /no/such/folder"),
    (["--model_config={not json"], "--model_config is not valid JSON"),
    (["--model_config={\"filters\": []}"], "filters must be positive integers"),
    (["--steps=0"], "steps must be a positive integer"),
    (["--batch_size=3", "--strategy=mirrored", "--cpu_devices=2"], "does not split evenly over 2 replicas"),
])
@pytest.mark.slow
def test_bad_input_is_a_one_line_error(flags, message, speech_dir, tmp_path):
    completed = train(*tiny_flags("conv_ae", speech_dir, tmp_path / "run", steps=2), *flags)
    assert_one_line_usage_error(completed, message)


@pytest.mark.slow
def test_a_model_dir_of_another_run_is_refused(speech_dir, tmp_path):
    assert train(*tiny_flags("style_encoder", speech_dir, tmp_path / "run", steps=1)).returncode == 0
    completed = train(*tiny_flags("conv_ae", speech_dir, tmp_path / "run", steps=1))
    assert_one_line_usage_error(completed, "holds a run of style_encoder with another configuration")


@pytest.mark.parametrize("name, expect", [("conv_vae", "recombining"), ("conv_ae", "steps on")])
@pytest.mark.slow
def test_transfer_with_a_trained_run(name, expect, speech_dir, tmp_path):
    model_dir = tmp_path / "run"
    assert train(*tiny_flags(name, speech_dir, model_dir, steps=1)).returncode == 0
    content, style = speech_dir / "s1" / "s1_000.wav", speech_dir / "s3" / "s3_001.wav"
    output = tmp_path / "out.wav"
    completed = run_command([sys.executable, "-m", "tfstyle.transfer", f"--model_dir={model_dir}",
                             f"--content={content}", f"--style={style}", f"--output={output}", "--steps=2",
                             "--griffin_lim_iters=4"])
    assert completed.returncode == 0, completed.stderr
    assert expect in completed.stderr
    audio, rate = soundfile.read(output)
    assert rate == 8000 and len(audio) == len(soundfile.read(content)[0]) and np.all(np.isfinite(audio))
    assert json.loads(output.with_suffix(".json").read_text())["model"] == name


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_the_same_command_resumes_from_it(speech_dir, tmp_path):
    model_dir = tmp_path / "run"
    flags = tiny_flags("conv_ae", speech_dir, model_dir, steps=100000)
    flags[flags.index("--checkpoint_every=2")] = "--checkpoint_every=100000"  # only the signal can save one
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen([sys.executable, "-m", "tfstyle.train", *flags], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:  # wait until the loop runs, then give it a few seconds of steps
        if line.startswith("training conv_ae"):
            break
    time.sleep(8)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    interrupted_at = checkpoint_step(model_dir)
    assert interrupted_at >= 1
    resumed = train(*tiny_flags("conv_ae", speech_dir, model_dir, steps=interrupted_at + 2))
    assert resumed.returncode == 0, resumed.stderr
    assert f"from step {interrupted_at}" in resumed.stderr
    assert json.loads(resumed.stdout)["trained_steps"] == 2


PARSE_RECIPE = """
import sys
from absl import flags
from tfstyle import train
train._define_flags()
flags.FLAGS([sys.argv[0], "--flagfile=" + sys.argv[1], "--data_dir=unused"])
print(train.experiment_from_flags().to_json())
"""


RECIPES = sorted(f for f in os.listdir(os.path.join(REPO, "training")) if f.endswith(".flags"))


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.slow
def test_every_published_recipe_parses_against_the_real_flags(recipe):
    """A renamed flag or config field must not silently break the recipes in training/."""
    completed = run_command([sys.executable, "-c", PARSE_RECIPE, os.path.join("training", recipe)])
    assert completed.returncode == 0, completed.stderr[-2000:]
    experiment = json.loads(completed.stdout)
    assert experiment["model"] == recipe.removesuffix(".flags")
    with open(os.path.join(REPO, "training", recipe)) as f:
        for line in f:
            if line.startswith("--") and "=" in line:
                name, value = line[2:].strip().split("=", 1)
                recorded = {**experiment["data"], **experiment["train"], "model": experiment["model"]}.get(name)
                if recorded is not None and name != "sample_rate":
                    assert str(recorded) == value or float(recorded) == float(value), (name, recorded, value)
