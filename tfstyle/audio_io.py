"""Reading audio files to mono float32 at a chosen sample rate, and writing 16-bit WAV.

16-bit PCM WAV goes through TensorFlow's own `tf.audio.decode_wav`; FLAC, OGG Vorbis, MP3 and other WAV encodings
(24-bit, float) through tensorflow-io, which is imported only when such a file or a resampling comes along.
"""

import os
import re
import struct

import numpy as np
import tensorflow as tf

from tfstyle.errors import InputError

SUPPORTED_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")

# Full scale of the integer sample types tensorflow-io hands back.
_FULL_SCALE = {tf.int16: 32768.0, tf.int32: 2147483648.0}


def load_audio(path: str, *, sample_rate: int | None = None, min_samples: int = 1) -> tuple[tf.Tensor, int]:
    """Reads an audio file as a mono float32 waveform in [-1, 1].

    Args:
        path: a .wav, .flac, .ogg or .mp3 file.
        sample_rate: resample to this rate (Hz); None keeps the file's own rate.
        min_samples: fewer samples than this (after resampling) is an error, e.g. one STFT frame.

    Returns:
        (waveform of shape [samples], sample rate in Hz).

    Raises:
        InputError: naming the file, when it is missing, empty, not decodable, too short, or holds NaN or Inf.
    """
    extension = os.path.splitext(path)[1].lower()
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a folder, not an audio file")
    if extension not in SUPPORTED_EXTENSIONS:
        raise InputError(f"{path}: unsupported audio format {extension or '(no extension)'}; "
                         f"supported: {', '.join(SUPPORTED_EXTENSIONS)}")
    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: file is empty")

    samples, file_rate = _decode(path, extension)
    if samples.shape[0] == 0 or samples.shape[1] == 0:
        raise InputError(f"{path}: contains no audio samples")
    waveform = tf.reduce_mean(samples, axis=-1)  # mix down to mono
    if not bool(tf.reduce_all(tf.math.is_finite(waveform))):
        raise InputError(f"{path}: contains NaN or infinite samples")
    if sample_rate is not None and sample_rate != file_rate:
        waveform = resample(waveform, rate_in=file_rate, rate_out=sample_rate)
        file_rate = sample_rate
    if waveform.shape[0] < min_samples:
        raise InputError(f"{path}: clip is too short: {waveform.shape[0]} samples at {file_rate} Hz, "
                         f"need at least {min_samples} (one STFT frame)")
    return waveform, file_rate


def _decode(path: str, extension: str) -> tuple[tf.Tensor, int]:
    """Decodes to float32 [samples, channels] and the file's sample rate."""
    if extension == ".wav":
        try:
            samples, rate = tf.audio.decode_wav(tf.io.read_file(path))
            return samples, int(rate)
        except tf.errors.InvalidArgumentError as e:
            # decode_wav reads 16-bit PCM only; other encodings go to tensorflow-io below. Anything else is broken.
            if "16-bit" not in e.message and "Bad audio format" not in e.message:
                raise InputError(f"{path}: not a readable WAV file (corrupt or truncated?): {_first_line(e)}") from None
    import tensorflow_io as tfio  # Deferred: its import is slow and it is needed for non-16-bit-WAV files only.

    try:
        audio = tfio.audio.AudioIOTensor(path)
        samples = audio.to_tensor()
        rate = int(audio.rate)
    except (tf.errors.OpError, ValueError, TypeError) as e:
        raise InputError(f"{path}: not a readable {extension[1:].upper()} file (corrupt or truncated?): "
                         f"{_first_line(e)}") from None
    if samples.dtype in _FULL_SCALE:
        samples = tf.cast(samples, tf.float32) / _FULL_SCALE[samples.dtype]
    return tf.cast(samples, tf.float32), rate


def _first_line(error: Exception) -> str:
    """The readable part of a TensorFlow op error, without its "{{function_node ...}}" and "[Op:...]" wrapping."""
    message = getattr(error, "message", None) or str(error)
    message = re.sub(r"\{\{[^}]*\}\}|\[Op:[^\]]*\].*", "", message).strip()
    return message.splitlines()[0] if message else type(error).__name__


def resample(waveform: tf.Tensor, *, rate_in: int, rate_out: int) -> tf.Tensor:
    """Band-limited resampling of a [samples] waveform (tensorflow-io's resampler)."""
    import tensorflow_io as tfio

    resampled = tfio.audio.resample(waveform[:, tf.newaxis], rate_in=rate_in, rate_out=rate_out)
    return resampled[:, 0]


def encode_wav(waveform: tf.Tensor | np.ndarray, sample_rate: int) -> bytearray:
    """16-bit PCM WAV bytes of a mono [samples] waveform; samples beyond [-1, 1] are clipped.

    Samples are converted as tf.audio.encode_wav converts them (round(x * 32768), halves away from zero,
    saturating), a block at a time straight into the file's bytes, so that a long clip costs its 16-bit size once.
    """
    samples = np.asarray(waveform, np.float32)
    data_size = 2 * samples.shape[0]
    wav = bytearray(_WAV_HEADER.size + data_size)
    _WAV_HEADER.pack_into(wav, 0, b"RIFF", 36 + data_size, b"WAVE", b"fmt ", 16, 1, 1, sample_rate,
                          2 * sample_rate, 2, 16, b"data", data_size)
    pcm = np.frombuffer(wav, "<i2", offset=_WAV_HEADER.size)
    block = 1 << 20
    for start in range(0, samples.shape[0], block):
        scaled = np.clip(samples[start:start + block], -1.0, 1.0) * 32768.0
        rounded = np.trunc(scaled + np.copysign(0.5, scaled))
        pcm[start:start + block] = np.clip(rounded, -32768, 32767)
    return wav


# RIFF header of mono 16-bit PCM: chunk sizes, format 1 (PCM), channels, rate, byte rate, block align, bits.
_WAV_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")
