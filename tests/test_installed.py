"""The package as a user installs it: built non-editable, run from another folder through the `tfstyle` script.

An editable install (what CI and developers use) finds saved_models/ beside the checkout and hides packaging bugs;
these tests install a real wheel into a folder of its own and check that nothing comes from the checkout.
"""

import json
import os
import subprocess
import sys

import pytest
import soundfile

from conftest import REPO
from tfstyle import registry

EXAMPLES = {
    "speech": ("examples/speech/content_flite_slt_h01.wav", "examples/speech/style_flite_awb_h02.wav"),
    "music": ("examples/music/content_violin_m06.wav", "examples/music/style_piano_m02.wav"),
}
SHIPPED = sorted(d for d in os.listdir(os.path.join(REPO, "saved_models"))
                 if os.path.isdir(os.path.join(REPO, "saved_models", d)))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(environment, folder to run in) for a non-editable install of this checkout in a folder of its own."""
    target = tmp_path_factory.mktemp("site")
    completed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), REPO],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert completed.returncode == 0, completed.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(target), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TFSTYLE_SAVED_MODELS", None)
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    return env, elsewhere, target


def run_installed(installed, *args):
    env, elsewhere, target = installed
    return subprocess.run([sys.executable, os.path.join(target, "bin", "tfstyle"), *args], cwd=elsewhere,
                          capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow
def test_the_installed_package_carries_every_shipped_model(installed):
    env, elsewhere, target = installed
    completed = subprocess.run(
        [sys.executable, "-c", "import tfstyle, tfstyle.loading as l; print(tfstyle.__file__); "
                               "print(l.shipped_models_dir()); print(l.shipped_model_path('conv_ae'))"],
        cwd=elsewhere, capture_output=True, text=True, env=env, timeout=300)
    assert completed.returncode == 0, completed.stderr
    package_file, models_dir, conv_ae = completed.stdout.split()
    assert package_file.startswith(str(target)) and models_dir.startswith(str(target)), completed.stdout
    assert sorted(d for d in os.listdir(models_dir) if os.path.isdir(os.path.join(models_dir, d))) == SHIPPED
    assert os.path.isfile(os.path.join(conv_ae, "saved_model.pb"))
    assert os.path.isfile(os.path.join(models_dir, "models.config"))


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_model_transfers_or_refuses_in_one_line(installed, name, tmp_path):
    # A model trained on one signal gets the example pair of its own rate (resampling is tested elsewhere); one that
    # takes any rate gets both. One transfer per subprocess costs TensorFlow's start-up, so CI runs no more.
    spec = registry.lookup(name)
    pairs = EXAMPLES if spec.any_sample_rate else (
        {"speech": EXAMPLES["speech"]} if spec.config_class().sample_rate == 16000 else {"music": EXAMPLES["music"]})
    for pair, (content, style) in pairs.items():
        output = tmp_path / f"{name}_{pair}.wav"
        completed = run_installed(installed, "transfer", f"--model={name}", f"--content={os.path.join(REPO, content)}",
                                  f"--style={os.path.join(REPO, style)}", f"--output={output}", "--steps=2",
                                  "--griffin_lim_iters=2")
        assert "Traceback" not in completed.stderr, completed.stderr[-3000:]
        if registry.lookup(name).transfer == "none":
            assert completed.returncode == 2 and completed.stderr.count("\n") == 1, completed.stderr
            assert completed.stderr.startswith(f"error: {name} ") and not output.exists()
            continue
        assert completed.returncode == 0, completed.stderr[-3000:]
        report = json.loads(output.with_suffix(".json").read_text())
        assert report["model"] == name
        assert report["weights"] == ("built_in" if not registry.lookup(name).trainable else "shipped")
        audio, rate = soundfile.read(output)
        content_info = soundfile.info(os.path.join(REPO, content))
        assert rate == content_info.samplerate and len(audio) == content_info.frames  # the content's rate and length


@pytest.mark.slow
def test_installed_help_and_a_missing_shipped_model(installed, tmp_path):
    env, _, _ = installed
    for args, usage in ((["--help"], "usage: tfstyle COMMAND "), (["transfer", "--help"], "usage: tfstyle transfer "),
                        (["evaluate", "--help"], "usage: tfstyle evaluate ")):
        completed = run_installed(installed, *args)
        assert completed.returncode == 0 and completed.stdout.startswith(usage), (args, completed.stdout[:200])
    content, style = (os.path.join(REPO, path) for path in EXAMPLES["speech"])
    env["TFSTYLE_SAVED_MODELS"] = str(tmp_path)  # a folder that ships nothing
    completed = subprocess.run(
        [sys.executable, os.path.join(installed[2], "bin", "tfstyle"), "transfer", "--model=conv_ae",
         f"--content={content}", f"--style={style}", f"--output={tmp_path / 'out.wav'}"],
        cwd=installed[1], capture_output=True, text=True, timeout=600, env=env)
    assert completed.returncode == 2 and completed.stderr.startswith("error: no shipped SavedModel for conv_ae")
    assert "--untrained" in completed.stderr and not (tmp_path / "out.wav").exists()
