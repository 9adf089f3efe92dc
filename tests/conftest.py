"""Shared fixtures: small synthetic audio (<= 1 s) written as real files, and the opt-in `slow` marker."""

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_RATE = 16000


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
