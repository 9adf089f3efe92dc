"""Long clips in overlapping chunks, so that a transfer's memory does not grow with the clip's length.

A clip of more frames than one chunk holds is cut into equal chunks that overlap by `overlap_frames(...)` frames.
Each chunk's spectrogram is computed from the waveform when it is needed, optimised on its own, and turned into
audio at once by `ChunkedGriffinLim`, which carries the phase across each join: the first half of a chunk's overlap
keeps the phases the previous chunk ended with, so the two reconstructions agree there and a short crossfade
between them has nothing to smooth over. Only the input and output waveforms are ever held whole.
"""

import dataclasses
import math

import numpy as np
import tensorflow as tf

from tfstyle import spectral_ops


# Columns a spectrogram panel of the transfer's figure keeps at most: its 400-pixel width, with room to zoom.
FIGURE_COLUMNS = 600


@dataclasses.dataclass(frozen=True)
class Chunk:
    """Frames [start, end) of a clip's centred STFT; `overlap` of them are shared with the previous chunk."""

    start: int
    end: int
    overlap: int

    @property
    def frames(self) -> int:
        return self.end - self.start


def overlap_frames(frame_length: int, frame_step: int) -> int:
    """Frames two neighbouring chunks share: enough for a crossfade one window long between two stretches where
    both chunks' reconstructions are complete (a window length of full overlap on each side), and at least 32."""
    return max(32, 2 * math.ceil(3 * frame_length / frame_step / 2))


def plan_chunks(total_frames: int, most_frames: int, overlap: int) -> list[Chunk]:
    """Chunks of `most_frames` frames or fewer, all of one length, covering `total_frames`; each shares at least
    `overlap` frames with the one before (the last may share more, so that it too has the common length).

    A clip that fits one chunk is one chunk (and is transferred exactly as before chunking existed).
    """
    if total_frames <= most_frames:
        return [Chunk(0, total_frames, 0)]
    if most_frames < 3 * overlap:
        raise ValueError(f"chunks of {most_frames} frames are too short to overlap by {overlap}")
    count = math.ceil((total_frames - overlap) / (most_frames - overlap))
    length = math.ceil((total_frames - overlap) / count) + overlap
    starts = [min(k * (length - overlap), total_frames - length) for k in range(count)]
    return [Chunk(start, start + length, previous + length - start if k else 0)
            for k, (previous, start) in enumerate(zip([0, *starts], starts))]


def padded_samples(waveform: tf.Tensor, first: int, last: int, frame_length: int) -> tf.Tensor:
    """Samples [first, last) of the waveform as `spectral_ops.stft` pads it (reflected by frame_length // 2 at each
    end), without padding (copying) the whole waveform: only a stretch that reaches past an end gets its reflected
    samples."""
    half, samples = frame_length // 2, int(waveform.shape[0])
    start, stop = first - half, last - half  # in the waveform's own samples
    parts = []
    if start < 0:  # reflect padding mirrors about the first sample, which it does not repeat
        parts.append(tf.reverse(waveform[1:1 - start], axis=[0]))
    parts.append(waveform[max(start, 0):min(stop, samples)])
    if stop > samples:
        parts.append(tf.reverse(waveform[2 * samples - 1 - stop:samples - 1], axis=[0]))
    return tf.concat(parts, axis=0) if len(parts) > 1 else parts[0]


def stft_frames(waveform: tf.Tensor, chunk: Chunk, *, frame_length: int, frame_step: int) -> tf.Tensor:
    """Frames [chunk.start, chunk.end) of the centred STFT of `waveform` (complex64): equal to those rows of
    `spectral_ops.stft(waveform)`, at the cost of the chunk alone."""
    segment = padded_samples(waveform, chunk.start * frame_step, (chunk.end - 1) * frame_step + frame_length,
                             frame_length)
    return spectral_ops.stft_of_padded(segment, frame_length=frame_length, frame_step=frame_step)


class ChunkedGriffinLim:
    """Griffin-Lim over consecutive chunks of one magnitude spectrogram, writing into one output waveform.

    Feed the chunks of `plan_chunks` in order to `add`; `waveform` is complete after the last. Each chunk is
    reconstructed as a segment of the padded signal; where a chunk overlaps the previous one, its first
    overlap // 2 frames keep the previous chunk's final phases throughout (pinned), and the output switches from
    the previous reconstruction to this one with a raised-cosine crossfade one window long that ends at the
    centre of the overlap.
    """

    def __init__(self, samples: int, *, n_iter: int, momentum: float, seed: int, frame_length: int,
                 frame_step: int, carry_phase: bool = True):
        self.carry_phase = carry_phase
        self.samples, self.n_iter, self.momentum, self.seed = samples, n_iter, momentum, seed
        self.frame_length, self.frame_step = frame_length, frame_step
        self._padded = np.zeros(samples + 2 * (frame_length // 2), np.float32)  # trimmed to `samples` at the end
        self._angles = None  # the previous chunk's final phases, [frames, bins]
        self._residual_squared = self._target_squared = 0.0

    def add(self, chunk: Chunk, magnitude: tf.Tensor, initial: tf.Tensor | None = None) -> None:
        """Reconstructs `chunk` from its magnitudes [chunk.frames, bins] and writes it into the output.

        `initial`: a complex STFT of the chunk whose phases to start from (else random phases from `seed`)."""
        magnitude = tf.convert_to_tensor(magnitude, tf.float32)
        pinned = chunk.overlap // 2 if self.carry_phase else 0
        if initial is not None:
            angles = spectral_ops.unit_phases(initial)
        else:
            angles = spectral_ops.random_phases(tf.shape(magnitude), seed=[self.seed, chunk.start])
        if pinned:
            shared = self._angles[-chunk.overlap:][:pinned]
            angles = tf.concat([shared, angles[pinned:]], axis=0)
        segment, self._angles = spectral_ops.griffin_lim_segment(
            magnitude, angles, pinned_frames=pinned, n_iter=self.n_iter, momentum=self.momentum,
            frame_length=self.frame_length, frame_step=self.frame_step)
        rebuilt = tf.abs(spectral_ops.stft_of_padded(segment, frame_length=self.frame_length,
                                                     frame_step=self.frame_step))
        self._residual_squared += float(tf.reduce_sum(tf.square(rebuilt - magnitude)))
        self._target_squared += float(tf.reduce_sum(tf.square(magnitude)))

        segment = segment.numpy()
        begin = chunk.start * self.frame_step
        if not chunk.overlap:
            self._padded[begin:begin + segment.size] = segment
            return
        # The join is the centre of the frame after the last pinned one.
        join = (chunk.start + chunk.overlap // 2) * self.frame_step + self.frame_length // 2
        fade_start = join - self.frame_length
        rising = 0.5 - 0.5 * np.cos(np.pi * np.arange(self.frame_length) / self.frame_length)
        own = segment[fade_start - begin:]
        fade = self._padded[fade_start:join]
        self._padded[fade_start:join] = fade * (1.0 - rising) + own[:self.frame_length] * rising
        self._padded[join:begin + segment.size] = own[self.frame_length:]

    @property
    def waveform(self) -> np.ndarray:
        """The output so far, [samples]."""
        return self._padded[self.frame_length // 2:self.frame_length // 2 + self.samples]

    @property
    def spectral_convergence(self) -> float:
        """||S - |STFT(x)||| / ||S|| over every chunk, each against its own reconstruction."""
        return math.sqrt(self._residual_squared / max(self._target_squared, 1e-30))


class ColumnPooler:
    """Streams spectrogram frames in and keeps at most `columns` columns: the max over each run of frames, so that
    a figure of an hour-long clip costs as little memory as one of a minute and short events still show."""

    def __init__(self, total_frames: int, columns: int = FIGURE_COLUMNS):
        self.group = max(1, math.ceil(total_frames / columns))
        self._pooled, self._pending = [], None

    def add(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames)
        if self._pending is not None:
            frames = np.concatenate([self._pending, frames])
        whole = frames.shape[0] // self.group * self.group
        if whole:
            self._pooled.append(frames[:whole].reshape(-1, self.group, frames.shape[1]).max(axis=1))
        self._pending = frames[whole:] if whole < frames.shape[0] else None

    def result(self) -> np.ndarray:
        parts = list(self._pooled)
        if self._pending is not None:
            parts.append(self._pending.max(axis=0, keepdims=True))
        return np.concatenate(parts)


def pool_columns(frames: np.ndarray, columns: int = FIGURE_COLUMNS) -> np.ndarray:
    """`frames` [frames, bins] reduced as ColumnPooler reduces a stream."""
    pooler = ColumnPooler(frames.shape[0], columns)
    pooler.add(frames)
    return pooler.result()
