"""Shared fixtures and helpers: small synthetic audio (<= 1 s) as real files, tiny zoo models and their exports,
the one-line error check, and the opt-in `slow` marker."""

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_RATE = 16000

# Tiny zoo models: small enough to train a few steps, export and reload in well under a second each.
TINY_RATE = 8000
SIGNAL = dict(sample_rate=TINY_RATE, frame_length=256, frame_step=64)
TINY = {
    "conv_ae": dict(filters=(4, 4, 8, 8)),
    "dilated_conv_ae": dict(filters=(4, 4, 8, 8)),
    "seq2seq_lstm_ae": dict(projection_units=16, lstm_units=16),
    "conv_vae": dict(n_mels=16, filters=(4, 8), latent_channels=4, embedding_dim=4),
    "style_encoder": dict(embedding_dim=4),
    "speaker_encoder": dict(projection=8, channels=8, embedding_dim=4, num_speakers=8),
    "timbre_encoder": dict(projection=8, channels=8, embedding_dim=4, num_speakers=8),
    "content_encoder": dict(projection=8, channels=8, content_dim=4, num_speakers=8, speaker_confusion_weight=1.0),
}
ALL_TINY = {**TINY, "random_cnn": dict(n_filters=16, kernel_width=5), "spectrogram": {}}
SPEAKERS = ("p225", "p226", "p227", "p228", "p229")


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run end-to-end tests marked slow")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end test; runs only with --run-slow (CI passes it)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def seeded_weights():
    """Keras initialisers draw from a global seed: fix it so every test sees the same weights and failures reproduce."""
    import keras
    keras.utils.set_random_seed(0)


@pytest.fixture
def rng():
    return np.random.default_rng(440)


def chirp(seconds: float = 1.0, sample_rate: int = SAMPLE_RATE, f0: float = 110.0, f1: float = 3000.0):
    """A linear chirp at half scale, float32."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    return (0.5 * np.sin(phase)).astype(np.float32)


def harmonic_tone(seconds: float = 1.0, sample_rate: int = SAMPLE_RATE, f0: float = 220.0, n_harmonics: int = 6):
    """A decaying harmonic tone (a crude plucked string), float32."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, n_harmonics + 1))
    return (0.4 * tone * np.exp(-3 * t) / np.max(np.abs(tone))).astype(np.float32)


@pytest.fixture
def content_wav(tmp_path):
    path = tmp_path / "content.wav"
    soundfile.write(path, chirp(1.0), SAMPLE_RATE, subtype="PCM_16")
    return str(path)


@pytest.fixture
def style_wav(tmp_path):
    path = tmp_path / "style.wav"
    soundfile.write(path, harmonic_tone(0.8), SAMPLE_RATE, subtype="PCM_16")
    return str(path)


def run_command(args, env_overrides=None, **kwargs):
    """Runs a command from the repository root, capturing text output."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env_overrides or {})}
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, env=env, timeout=600, **kwargs)


def run_transfer(*flags):
    return run_command([sys.executable, "-m", "tfstyle.transfer", *flags])


def tiny_model(name):
    """(model, config) of zoo model `name` in its tiny configuration, with seeded weights."""
    import keras
    from tfstyle import registry

    keras.utils.set_random_seed(0)  # the same weights every run, so a failure reproduces
    spec = registry.lookup(name)
    config = spec.config_class(**({} if spec.any_sample_rate else SIGNAL), **ALL_TINY[name])
    return registry.build_model(name, config), config


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """Each tiny model exported once per test session: name -> (in-memory model, SavedModel path)."""
    from tfstyle import export

    root = tmp_path_factory.mktemp("saved_models")
    result = {}
    for name in sorted(ALL_TINY):
        model, config = tiny_model(name)
        result[name] = (model, export.export_saved_model(name, model, config, str(root / name)))
    return result


def write_clips(folder, speakers=SPEAKERS, per_speaker=3, seconds=0.6, rate=TINY_RATE, parallel=False):
    """A folder of speakers (one sub-folder each) of harmonic tones, a pitch per speaker; `parallel` names the
    clips alike in every folder (000.wav, ...), as a parallel corpus's sentences are."""
    for s, speaker in enumerate(speakers):
        (folder / speaker).mkdir(parents=True, exist_ok=True)
        for i in range(per_speaker):
            clip = harmonic_tone(seconds, rate, f0=110.0 * (s + 1) + 10 * i)
            name = f"{i:03d}.wav" if parallel else f"{speaker}_{i:03d}.wav"
            soundfile.write(folder / speaker / name, clip, rate)


def assert_one_line_usage_error(completed, message):
    """The error contract: exit 2, no traceback, one line `error: ...` containing `message`."""
    assert completed.returncode == 2, completed.stderr
    assert "Traceback" not in completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
