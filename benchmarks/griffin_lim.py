"""Our tf.signal Griffin-Lim against librosa.griffinlim, measured in the same run.

    python benchmarks/griffin_lim.py [--seconds=10] [--n_iter=100] [--repeats=3]

A 10 s music clip at 22.05 kHz (the example violin clip, looped), n_fft 2048, hop 512, 100 iterations, for momentum
0.99 (fast Griffin-Lim) and 0 (classic). Prints time per iteration and spectral convergence
||S - |STFT(x)||| / ||S|| of each implementation, scored by the same function, and our speed-up over librosa.
Both get one untimed warm-up run (tracing, numba), then the best of --repeats timed runs counts.
"""

import os
import sys
import time

from absl import app, flags

from tfstyle import audio_io, spectral_ops

import librosa  # noqa: E402  (after tfstyle, which quietens TensorFlow's start-up logging)
import numpy as np  # noqa: E402

flags.DEFINE_float("seconds", 10.0, "Clip length in seconds.")
flags.DEFINE_integer("n_iter", 100, "Griffin-Lim iterations.")
flags.DEFINE_integer("repeats", 3, "Timed runs per implementation; the fastest counts.")
FLAGS = flags.FLAGS

SAMPLE_RATE = 22050
FRAME_LENGTH, FRAME_STEP = 2048, 512
CLIP = os.path.join(os.path.dirname(__file__), "..", "examples", "music", "content_violin_m06.wav")


def best_time(run, repeats):
    run()  # warm-up: tf.function tracing, numba compilation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return min(times), result


def main(argv):
    del argv
    waveform, _ = audio_io.load_audio(CLIP, sample_rate=SAMPLE_RATE)
    n_samples = int(FLAGS.seconds * SAMPLE_RATE)
    waveform = np.resize(waveform.numpy(), n_samples)  # loop the clip to the requested length
    magnitude = spectral_ops.stft_magnitude(waveform, frame_length=FRAME_LENGTH, frame_step=FRAME_STEP).numpy()
    print(f"{FLAGS.seconds:g} s at {SAMPLE_RATE} Hz, n_fft {FRAME_LENGTH}, hop {FRAME_STEP}, {FLAGS.n_iter} iterations, "
          f"{magnitude.shape[0]} frames; best of {FLAGS.repeats}")
    print(f"{'momentum':>8}  {'ours ms/iter':>12}  {'librosa ms/iter':>15}  {'speed-up':>8}  "
          f"{'ours SC':>8}  {'librosa SC':>10}")
    for momentum in (0.99, 0.0):
        ours_s, ours = best_time(lambda: spectral_ops.griffin_lim(
            magnitude, n_iter=FLAGS.n_iter, length=n_samples, frame_length=FRAME_LENGTH, frame_step=FRAME_STEP,
            momentum=momentum, seed=0).numpy(), FLAGS.repeats)
        theirs_s, theirs = best_time(lambda: librosa.griffinlim(
            magnitude.T, n_iter=FLAGS.n_iter, hop_length=FRAME_STEP, n_fft=FRAME_LENGTH, momentum=momentum,
            length=n_samples, random_state=0).astype(np.float32), FLAGS.repeats)
        convergence = [float(spectral_ops.spectral_convergence(
            magnitude, x, frame_length=FRAME_LENGTH, frame_step=FRAME_STEP)) for x in (ours, theirs)]
        print(f"{momentum:>8}  {1000 * ours_s / FLAGS.n_iter:>12.2f}  {1000 * theirs_s / FLAGS.n_iter:>15.2f}  "
              f"{theirs_s / ours_s:>7.2f}x  {convergence[0]:>8.4f}  {convergence[1]:>10.4f}")
    sys.stdout.flush()


if __name__ == "__main__":
    app.run(main)
