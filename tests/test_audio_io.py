import numpy as np
import pytest
import soundfile

from tfstyle import audio_io
from tfstyle.errors import InputError
from conftest import chirp, SAMPLE_RATE

FORMATS = {  # file name -> soundfile.write options, decode tolerance (lossy codecs differ by more)
    "pcm16.wav": (dict(subtype="PCM_16"), 1e-4),
    "pcm24.wav": (dict(subtype="PCM_24"), 1e-4),
    "float.wav": (dict(subtype="FLOAT"), 1e-6),
    "clip.flac": (dict(subtype="PCM_16"), 1e-4),
    "clip.ogg": (dict(subtype="VORBIS"), 0.1),
    "clip.mp3": (dict(format="MP3"), 0.1),
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_decodes_each_supported_format(name, tmp_path):
    options, tolerance = FORMATS[name]
    x = chirp(0.5, f1=2000.0)
    path = tmp_path / name
    soundfile.write(path, x, SAMPLE_RATE, **options)
    waveform, rate = audio_io.load_audio(str(path))
    assert rate == SAMPLE_RATE
    assert waveform.dtype == "float32" and waveform.shape.rank == 1
    if tolerance < 0.01:
        np.testing.assert_allclose(waveform.numpy(), x, atol=tolerance)
    else:  # lossy codecs add delay and padding: compare level, not samples
        assert abs(waveform.shape[0] - len(x)) < 0.1 * SAMPLE_RATE
        assert np.sqrt(np.mean(waveform.numpy() ** 2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=tolerance)


def test_mixes_multichannel_down_to_mono(tmp_path):
    x = chirp(0.25)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([x, np.zeros_like(x)], axis=1), SAMPLE_RATE)
    waveform, _ = audio_io.load_audio(str(path))
    np.testing.assert_allclose(waveform.numpy(), x / 2, atol=1e-4)


def test_resamples_to_the_requested_rate(tmp_path):
    path = tmp_path / "clip.wav"
    soundfile.write(path, chirp(0.5, f1=1000.0), SAMPLE_RATE)
    waveform, rate = audio_io.load_audio(str(path), sample_rate=22050)
    assert rate == 22050
    assert abs(waveform.shape[0] - 11025) <= 2
    assert 0.3 < float(np.max(np.abs(waveform))) < 0.7


def test_encode_wav_round_trips_and_clips(tmp_path):
    x = np.array([0.0, 0.5, -0.5, 2.0, -2.0], np.float32)
    path = tmp_path / "out.wav"
    path.write_bytes(audio_io.encode_wav(x, 8000))
    decoded, rate = soundfile.read(path, dtype="float32")
    assert rate == 8000
    np.testing.assert_allclose(decoded, [0.0, 0.5, -0.5, 1.0, -1.0], atol=1e-4)


@pytest.mark.parametrize("problem, make, message", [
    ("missing", lambda p: None, "no such file"),
    ("empty", lambda p: p.write_bytes(b""), "empty"),
    ("text", lambda p: p.write_text("not audio at all\n" * 20), "not a readable WAV"),
    ("truncated", lambda p: p.write_bytes(_wav_bytes(p)[:60]), "not a readable WAV"),
])
def test_unreadable_files_name_the_file(problem, make, message, tmp_path):
    path = tmp_path / f"{problem}.wav"
    make(path)
    with pytest.raises(InputError, match=message) as error:
        audio_io.load_audio(str(path))
    assert str(path) in str(error.value)


def _wav_bytes(path):
    soundfile.write(path, chirp(0.25), SAMPLE_RATE)
    return path.read_bytes()


def test_rejects_unsupported_extension_short_and_non_finite(tmp_path):
    (tmp_path / "clip.aiff").write_bytes(b"FORM")
    with pytest.raises(InputError, match="unsupported audio format .aiff"):
        audio_io.load_audio(str(tmp_path / "clip.aiff"))
    soundfile.write(tmp_path / "short.wav", chirp(0.01), SAMPLE_RATE)
    with pytest.raises(InputError, match="too short"):
        audio_io.load_audio(str(tmp_path / "short.wav"), min_samples=2048)
    soundfile.write(tmp_path / "inf.wav", np.array([0.0, np.inf] * 100, np.float32), SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(InputError, match="NaN or infinite"):
        audio_io.load_audio(str(tmp_path / "inf.wav"))
