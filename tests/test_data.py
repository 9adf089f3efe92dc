import csv

import numpy as np
import pytest
import tensorflow as tf

from tfstyle import configs, data
from tfstyle.errors import InputError
from conftest import SPEAKERS, TINY_RATE as RATE, chirp, harmonic_tone, write_clips


def config(data_dir, **overrides):
    return configs.DataConfig(data_dir=str(data_dir), sample_rate=RATE, frame_length=256, frame_step=64,
                              clip_seconds=0.5, validation_fraction=0.4, **overrides)


@pytest.fixture
def vctk(tmp_path):
    write_clips(tmp_path / "wav48")
    (tmp_path / "wav48" / "p225" / "broken.wav").write_text("not a wav file")
    return tmp_path


@pytest.mark.parametrize("layout", ["vctk", "auto"])
def test_vctk_layout_labels_by_speaker(layout, vctk):
    files = data.list_audio_files(str(vctk), layout=layout)
    assert len(files) == 16 and {f.label for f in files} == set(SPEAKERS)


def test_gtzan_and_folder_layouts(tmp_path):
    write_clips(tmp_path / "genres", speakers=("blues", "jazz"), per_speaker=2)
    assert {f.label for f in data.list_audio_files(str(tmp_path))} == {"blues", "jazz"}  # auto finds genres/
    assert {f.label for f in data.list_audio_files(str(tmp_path / "genres"), layout="folder")} == {"blues", "jazz"}
    with pytest.raises(InputError, match="expects the folder"):
        data.list_audio_files(str(tmp_path / "genres"), layout="vctk")


def test_manifest_layout(tmp_path):
    write_clips(tmp_path / "audio", speakers=("a", "b"), per_speaker=2)
    with open(tmp_path / "manifest.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "speaker_id"])
        for speaker in ("a", "b"):
            for i in range(2):
                writer.writerow([f"audio/{speaker}/{speaker}_{i:03d}.wav", f"spk_{speaker}"])
    files = data.list_audio_files("", layout="manifest", manifest=str(tmp_path / "manifest.csv"))
    assert [f.label for f in files] == ["spk_a", "spk_a", "spk_b", "spk_b"]
    assert all(f.path.startswith(str(tmp_path / "audio")) for f in files)


def test_missing_or_empty_data_folder_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="data folder does not exist"):
        data.list_audio_files(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no audio here")
    with pytest.raises(InputError, match="no audio files"):
        data.list_audio_files(str(tmp_path / "empty"))


def test_split_is_speaker_disjoint_and_deterministic(vctk):
    files = data.list_audio_files(str(vctk))
    split = data.split_files(files, validation_fraction=0.4, seed=3)
    train_speakers = {f.label for f in split.train}
    validation_speakers = {f.label for f in split.validation}
    assert len(validation_speakers) == 2 and not train_speakers & validation_speakers
    assert len(split.train) + len(split.validation) == len(files)
    assert data.split_files(files, validation_fraction=0.4, seed=3) == split
    assert any(data.split_files(files, validation_fraction=0.4, seed=s) != split for s in range(4, 10))


def test_pipeline_skips_the_corrupt_file_and_yields_fixed_shape_batches(vctk):
    dataset = data.AudioDataset(config(vctk))
    batch = next(iter(dataset.train(4)))
    assert batch["waveform"].shape == (4, 4000)
    assert batch["log_magnitude"].shape == (4, 1 + 4000 // 64, 129)
    assert batch["label"].dtype == tf.int32
    validation = list(dataset.validation(4))
    # Each 0.6 s validation file gives two 0.5 s clips (the second zero-padded).
    assert sum(b["label"].shape[0] for b in validation) == 2 * len(dataset.split.validation)
    assert all(b["waveform"].shape[1:] == (4000,) for b in validation)
    # Filling the shuffle buffer read every training file and the pass above every validation file.
    assert [p for p in dataset.skipped if p.endswith("broken.wav")]


def test_pipeline_is_deterministic_for_a_seed(vctk):
    first = next(iter(data.AudioDataset(config(vctk)).train(4)))
    again = next(iter(data.AudioDataset(config(vctk)).train(4)))
    other = next(iter(data.AudioDataset(config(vctk, seed=1)).train(4)))
    np.testing.assert_array_equal(first["waveform"], again["waveform"])
    assert not np.array_equal(first["waveform"], other["waveform"])


def dominant_frequency(x, rate=RATE):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spectrum) * rate / len(x)


def sine(freq, seconds=1.0):
    return tf.sin(2 * np.pi * freq * tf.range(int(seconds * RATE), dtype=tf.float32) / RATE)


def test_time_stretch_changes_duration_not_pitch():
    stretched = data.time_stretch(sine(440.0), 1.25).numpy()
    assert abs(len(stretched) - RATE / 1.25) <= 1
    assert dominant_frequency(stretched[500:-500]) == pytest.approx(440.0, abs=10)


def test_pitch_shift_changes_pitch_not_duration():
    shifted = data.pitch_shift(sine(440.0), 2.0).numpy()
    assert len(shifted) == RATE
    assert dominant_frequency(shifted[500:-500]) == pytest.approx(440.0 * 2 ** (2 / 12), abs=10)


def test_augmentation_switches(vctk):
    plain = config(vctk, augment=True, time_stretch=0.0, pitch_shift_semitones=0.0, noise_stddev=0.0)
    waveforms = tf.constant(np.stack([chirp(0.5, RATE), harmonic_tone(0.5, RATE)]))
    np.testing.assert_array_equal(data.augment(waveforms, plain, tf.constant([1, 2]), 4000), waveforms)
    noisy = data.augment(waveforms, config(vctk, time_stretch=0.0, pitch_shift_semitones=0.0),
                         tf.constant([1, 2]), 4000)
    assert 0.001 < float(tf.math.reduce_std(noisy - waveforms)) < 0.01
    headroom = tf.constant(np.stack([chirp(0.7, RATE), harmonic_tone(0.7, RATE)]))
    augmented = data.augment(headroom, config(vctk, noise_stddev=0.0), tf.constant([1, 2]), 4000)
    assert augmented.shape == (2, 4000) and np.all(np.isfinite(augmented))
    assert not np.allclose(augmented, headroom[:, :4000], atol=0.05)


def test_stretch_and_shift_is_per_example():
    waveforms = tf.stack([sine(440.0, 1.5), sine(440.0, 1.5)])
    out = data.stretch_and_shift(waveforms, rates=[1.0, 1.2], semitones=[2.0, -2.0], length=RATE).numpy()
    assert out.shape == (2, RATE)
    assert dominant_frequency(out[0, 500:-500]) == pytest.approx(440.0 * 2 ** (2 / 12), abs=10)
    assert dominant_frequency(out[1, 500:-500]) == pytest.approx(440.0 * 2 ** (-2 / 12), abs=10)
