"""Aligned pairs for content training: DTW alignment, frame-exact clips, frequency scaling, and bad corpora."""

import numpy as np
import pytest
import soundfile
import tensorflow as tf

from tfstyle import aligned_data, configs, spectral_ops
from tfstyle.errors import InputError
from conftest import harmonic_tone, write_clips

RATE = 8000
STFT = {"frame_length": 256, "frame_step": 64}
# A "sentence" is a tune (pitches in Hz); each voice sings it at its own tempo (seconds per note) and with its own
# timbre (how fast its harmonics fall off).
TUNES = {"x": (200.0, 300.0, 250.0, 400.0), "y": (400.0, 250.0, 300.0, 200.0)}
VOICES = {"a": (0.25, 1.0), "b": (0.4, 2.0), "c": (0.3, 0.5), "d": (0.35, 1.5)}


def sing(tune, note_seconds, rolloff):
    t = np.arange(int(note_seconds * RATE)) / RATE
    notes = [sum(np.sin(2 * np.pi * f0 * k * t) / k**rolloff for k in range(1, 8) if f0 * k < RATE / 2)
             for f0 in tune]
    return (0.3 * np.concatenate(notes) / np.max(np.abs(np.concatenate(notes)))).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parallel")
    for voice, (note_seconds, rolloff) in VOICES.items():
        (folder / voice).mkdir()
        for name, tune in TUNES.items():
            soundfile.write(folder / voice / f"{name}.wav", sing(tune, note_seconds, rolloff), RATE)
    return folder


def pairs(folder, **overrides):
    settings = dict(data_dir=str(folder), sample_rate=RATE, clip_seconds=0.5, validation_fraction=0.0,
                    augment=False, **STFT)
    return aligned_data.AlignedPairs(configs.DataConfig(**{**settings, **overrides}))


def test_dtw_aligns_each_note_with_the_same_note_in_another_voice(corpus):
    dataset = pairs(corpus)
    aligned = dataset.alignment(str(corpus / "a" / "x.wav"), str(corpus / "b" / "x.wav"))
    step = STFT["frame_step"]
    note_frames = {voice: note_seconds * RATE / step for voice, (note_seconds, _) in VOICES.items()}
    assert np.all(np.diff(aligned) >= 0)
    for note in range(len(TUNES["x"])):
        middle = int((note + 0.5) * note_frames["a"])
        assert int(aligned[middle] // note_frames["b"]) == note


def test_batches_pair_two_voices_with_aligned_frames_inside_each_clip(corpus):
    dataset = pairs(corpus)
    batch = next(iter(dataset.train(4)))
    bins = STFT["frame_length"] // 2 + 1
    assert batch["log_magnitude"].shape[0] == 4 and batch["log_magnitude"].shape[2] == bins
    assert batch["aligned"].shape == (4, aligned_data.FRAMES_PER_PAIR, 2)
    assert np.all(batch["label"].numpy() != batch["paired_label"].numpy())
    assert np.all(batch["frames"].numpy() >= round(0.5 * RATE / STFT["frame_step"]))  # clip_seconds at least
    # Zero-padded to the longest clip of the batch, which has no frame more than its own.
    assert batch["log_magnitude"].shape[1] == max(batch["frames"])
    assert batch["paired_log_magnitude"].shape[1] == max(batch["paired_frames"])
    for i in range(4):
        assert np.all(batch["aligned"][i, :, 0] < batch["frames"][i])
        assert np.all(batch["aligned"][i, :, 1] < batch["paired_frames"][i])


def test_a_clip_holds_exactly_its_frames_of_the_whole_file():
    waveform = harmonic_tone(0.6, RATE, f0=330.0)
    whole = spectral_ops.log_magnitude_spectrogram(waveform, **STFT)
    segment = aligned_data._frames_segment(waveform, 5, 17, STFT["frame_step"], STFT["frame_length"])
    clip = spectral_ops.log_magnitude(tf.abs(spectral_ops.stft_of_padded(segment, **STFT)))
    np.testing.assert_allclose(clip, whole[5:17], atol=1e-4)


def test_scale_frequencies_moves_a_peak_by_the_factor():
    magnitude = np.zeros([2, 3, 129], np.float32)
    magnitude[:, :, 20] = 1.0
    scaled = aligned_data.scale_frequencies(tf.constant(magnitude), tf.constant([1.0, 1.5])).numpy()
    np.testing.assert_allclose(scaled[0], magnitude[0])
    assert np.argmax(scaled[1, 0]) == 30


def test_augmented_batches_differ_from_plain_ones(corpus):
    plain = next(iter(pairs(corpus).train(2)))
    augmented = next(iter(pairs(corpus, augment=True, pitch_shift_semitones=2.0).train(2)))
    np.testing.assert_array_equal(plain["aligned"], augmented["aligned"])  # the same pairs, differently heard
    assert not np.allclose(plain["log_magnitude"], augmented["log_magnitude"])


def test_validation_pairs_are_the_same_every_pass(corpus):
    dataset = pairs(corpus, validation_fraction=0.5)
    first = [b["aligned"].numpy() for b in dataset.validation(8)]
    second = [b["aligned"].numpy() for b in dataset.validation(8)]
    assert len(first) == 8 and all(np.array_equal(a, b) for a, b in zip(first, second))


def test_a_corpus_without_shared_file_names_is_refused(tmp_path):
    write_clips(tmp_path / "voices", speakers=("s1", "s2"), per_speaker=2, rate=RATE)
    with pytest.raises(InputError, match="parallel corpus"):
        pairs(tmp_path / "voices")
