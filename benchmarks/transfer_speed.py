"""How fast is a random-CNN style transfer, against this machine's matmul rate and the original formulation?

    python benchmarks/transfer_speed.py [--seconds=10] [--reference_steps=300] [--noscaling] [--parts=bcde]

Everything is measured in the same run, on the example violin (content) and piano (style) clips looped to
--seconds at 22.05 kHz, n_fft 2048, hop 512, 4096 filters of width 11:

  (a) TensorFlow's float32 and bfloat16 matmul throughput here (4096 x 4096, best of 5): the reference rates.
  (b) time per optimisation step (loss and gradient) of each path, with its achieved GFLOP/s (operations it
      really performs / time) and its effective GFLOP/s (operations of the original formulation / time):
        reference  tf.nn.conv1d + explicit 4096 x 4096 Grams, float32 (the original method's step)
        float32    the convolution as one matmul + the Gram loss in its positions-only exact form
        bfloat16   the same with the convolution's and the Gram loss's matmuls in bfloat16
  (c) whole transfers: the original settings (reference path, L-BFGS, --reference_steps steps) give a style
      loss; each of our optimisers runs as many steps, and the time it took to reach that loss is printed, with
      the defaults' wall time and final loss, and for each result how much of the content's melody it kept.
  (d) the whole command, `python -m tfstyle.transfer` with its defaults (files in, files out), in a fresh process
      each: wall time, time per second of audio and peak RSS at --seconds of content and, with --scaling, at 60 s
      and --long_seconds (10 minutes) of content; the style clip stays --seconds long. A clip longer than
      --gram_window frames goes in chunks, so the peak should not grow with length beyond the audio itself. Then
      the same at --seconds with --compare_flags added (by default a content loss through content_encoder).
  (f) speech: the command with its defaults (for two speech clips: the source-filter conversion) on the example
      speech pair looped to --seconds at 16 kHz, beside the same with --method=gram (the Gram optimisation, the
      default for speech before), fresh processes in the same run: wall time, time per second of audio, peak RSS.
  (e) what the defaults stand on: wall time, style loss, content loss and melody of default transfers (Adam)
      cut to fewer steps and of short L-BFGS runs, on both shipped example pairs (whole clips, at their own rate).
"""

import json
import os
import subprocess
import sys
import time

from absl import app, flags

from tfstyle import audio_io, configs, registry, spectral_ops, transfer_lib

import numpy as np  # noqa: E402  (after tfstyle, which quietens TensorFlow's start-up logging)
import tensorflow as tf  # noqa: E402

flags.DEFINE_float("seconds", 10.0, "Clip length in seconds.")
flags.DEFINE_integer("reference_steps", 300, "L-BFGS steps of the original settings.")
flags.DEFINE_integer("timed_steps", 10, "Steps timed per path in (b).")
flags.DEFINE_bool("scaling", True, "Also measure 5 s and 60 s clips (d).")
flags.DEFINE_string("parts", "bcdef", "Parts to run after (a), e.g. --parts=b for the step times only.")
flags.DEFINE_float("long_seconds", 600.0, "The longest clip (d) measures with --scaling.")
flags.DEFINE_string("compare_flags", "--content_model=content_encoder --content_weight=10",
                    "(d) also runs the command at --seconds with these transfer flags added (separated by ' '), "
                    "beside the defaults; empty: not.")
flags.DEFINE_string("child", None, "Internal: run the transfer command with these flags (separated by ' ') and "
                    "print its peak RSS as JSON.")
FLAGS = flags.FLAGS

SAMPLE_RATE, FRAME_LENGTH, FRAME_STEP, FILTERS, WIDTH = 22050, 2048, 512, 4096, 11
# The original method's step: float32, tf.nn.conv1d (ReferenceCNN), explicit Gram matrices over the whole clip.
# The original method: float32, explicit Grams over the whole clip, and its optimised spectrogram as the output.
REFERENCE = dict(precision="float32", explicit_gram=True, gram_window=0, style_lifter=0, keep_loudness=False)
EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")
EXAMPLE_PAIRS = {"music": ("music/content_violin_m06.wav", "music/style_piano_m02.wav"),
                 "speech": ("speech/content_flite_slt_h01.wav", "speech/style_flite_awb_h02.wav")}


def log_magnitudes(content_seconds: float, style_seconds: float) -> tuple[tf.Tensor, tf.Tensor]:
    clips = []
    for name, seconds in zip(EXAMPLE_PAIRS["music"], (content_seconds, style_seconds)):
        waveform, _ = audio_io.load_audio(os.path.join(EXAMPLES, name), sample_rate=SAMPLE_RATE)
        looped = np.resize(waveform.numpy(), int(seconds * SAMPLE_RATE))
        clips.append(spectral_ops.log_magnitude_spectrogram(looped, frame_length=FRAME_LENGTH,
                                                            frame_step=FRAME_STEP))
    return clips[0], clips[1]


class ReferenceCNN:
    """The original formulation: the same random filters through tf.nn.conv1d."""

    feature_layer_names = ("conv",)

    def __init__(self, model):
        self.kernel = tf.reshape(model.kernel, [WIDTH, -1, FILTERS])

    def features(self, log_magnitude):
        return {"conv": tf.nn.relu(tf.nn.conv1d(log_magnitude, self.kernel, stride=1, padding="SAME"))}


def matmul_rate(dtype, n: int = 4096) -> float:
    a = tf.cast(tf.random.stateless_normal([n, n], seed=[0, 0]), dtype)
    b = tf.cast(tf.random.stateless_normal([n, n], seed=[0, 1]), dtype)
    tf.matmul(a, b).numpy()
    best = min(_timed(lambda: tf.matmul(a, b).numpy()) for _ in range(5))
    return 2 * n**3 / best / 1e9


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def step_flops(frames: int, style_frames: int, bins: int, explicit: bool) -> float:
    """Multiply-adds x 2 of one loss-and-input-gradient evaluation."""
    convolution = 2 * (2 * frames * WIDTH * bins * FILTERS)  # forward + gradient w.r.t. the input
    if explicit:
        gram = 2 * (2 * frames * FILTERS**2)  # A^T A forward, A (G - G_s) backward
    else:
        gram = 2 * (2 * frames * frames * FILTERS + 2 * frames * style_frames * FILTERS)  # A A^T, A S^T; backward
    return convolution + gram


def time_step(model, content, style, config) -> float:
    """Median seconds per loss-and-gradient step of the transfer loop's own step (Adam), after compilation.

    The median of --timed_steps step-to-step intervals: robust to the odd slow step on a shared machine.
    """
    stamps = []
    settings = configs.TransferConfig(**{**config, "steps": FLAGS.timed_steps + 1})
    transfer_lib.transfer_spectrogram(model, content, style, settings,
                                  on_step=lambda done, step_losses: stamps.append(time.perf_counter()))
    return float(np.median(np.diff(stamps)))  # the first step, which compiles, has no interval before it


def time_to_loss(model, content, style, config: dict, target: float, max_steps: int):
    """(seconds until the style loss first reaches `target` (inf if never), the TransferResult)."""
    times = []
    start = time.perf_counter()
    result = transfer_lib.transfer_spectrogram(
        model, content, style, configs.TransferConfig(**{**config, "steps": max_steps}),
        on_step=lambda done, step_losses: times.append((time.perf_counter() - start, step_losses["style_loss"])))
    reached = [t for t, loss in times if loss <= target]
    return (reached[0] if reached else float("inf")), result


def melody_kept(result_log_magnitude, content_log_magnitude, sample_rate: int = SAMPLE_RATE) -> float:
    """Mean cosine similarity of the result's and the content's chroma, frame by frame: 1 = the same notes.

    The style loss alone does not say whether the content survived: optimised far enough with content weight 0,
    a spectrogram takes on the style clip's notes too.
    """
    import librosa  # Deferred: only this measure needs it.

    chroma = [librosa.feature.chroma_stft(S=np.expm1(np.asarray(x, np.float64)).T ** 2, sr=sample_rate,
                                          n_fft=FRAME_LENGTH) for x in (result_log_magnitude, content_log_magnitude)]
    dot = np.sum(chroma[0] * chroma[1], axis=0)
    return float(np.mean(dot / (np.linalg.norm(chroma[0], axis=0) * np.linalg.norm(chroma[1], axis=0) + 1e-12)))


def child(command_flags: str) -> None:
    import atexit

    from tfstyle import transfer

    start = time.perf_counter()
    # The command ends with sys.exit: report from an exit handler.
    atexit.register(lambda: print(json.dumps({"wall_s": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()})))
    transfer.run(["transfer", *command_flags.split(" ")])


def peak_rss_mb() -> float:
    """This process's peak resident set size. Not getrusage's ru_maxrss: Linux carries that across exec, so a
    child started from this (large) benchmark process would report the parent's peak as its own."""
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return int(fields["VmHWM"].split()[0]) / 1024


def run_child(folder: str, seconds: float, extra_flags: str = "", pair: str = "music") -> dict:
    """The transfer command on the example `pair`'s content looped to `seconds` (style: its style clip looped to
    --seconds), with `extra_flags` (separated by ' ') added; music at 22.05 kHz, speech at 16 kHz."""
    paths = {}
    rate = SAMPLE_RATE if pair == "music" else 16000
    for role, name, length in (("content", EXAMPLE_PAIRS[pair][0], seconds),
                               ("style", EXAMPLE_PAIRS[pair][1], FLAGS.seconds)):
        waveform, _ = audio_io.load_audio(os.path.join(EXAMPLES, name), sample_rate=rate)
        paths[role] = os.path.join(folder, f"{pair}_{role}_{length:g}s.wav")
        with open(paths[role], "wb") as f:
            f.write(audio_io.encode_wav(np.resize(waveform.numpy(), int(length * rate)), rate))
    output = os.path.join(folder, f"out_{seconds:g}s.wav")
    command = f"--content={paths['content']} --style={paths['style']} --output={output} {extra_flags}".strip()
    completed = subprocess.run([sys.executable, __file__, f"--child={command}"], capture_output=True, text=True,
                               check=True)
    with open(os.path.splitext(output)[0] + ".json") as f:
        report = json.load(f)
    return {**json.loads(completed.stdout.strip().splitlines()[-1]), "chunks": report["chunks"],
            "style_loss": report["loss_end"].get("style_loss", float("nan")), "method": report["method"]}


def step_times(rates, model, reference, content, style) -> None:
    paths = {
        "reference": (reference, REFERENCE),
        "float32": (model, dict(precision="float32")),
        "bfloat16": (model, dict(precision="bfloat16")),
    }
    frames, bins = content.shape
    reference_flops = step_flops(frames, style.shape[0], bins, explicit=True)
    print(f"(b) one step, {FLAGS.seconds:g} s clip ({frames} frames x {bins} bins), original formulation "
          f"{reference_flops / 1e9:.0f} GFLOP")
    times = {name: time_step(path_model, content, style, config) for name, (path_model, config) in paths.items()}
    for name, seconds in times.items():
        flops = step_flops(frames, style.shape[0], bins, explicit=name == "reference")
        rate = rates["bfloat16" if name == "bfloat16" else "float32"]
        print(f"    {name:>9}: {seconds:6.3f} s/step, achieved {flops / seconds / 1e9:6.1f} GFLOP/s "
              f"({flops / seconds / 1e9 / rate:4.0%} of {rate:.0f}), effective {reference_flops / seconds / 1e9:6.1f} "
              f"GFLOP/s, {seconds / times['float32']:.2f}x the float32 path's time")


def whole_transfers(model, reference, content, style) -> None:
    print(f"(c) whole transfers to the style loss of the original settings ({FLAGS.reference_steps} L-BFGS steps); "
          "'melody' is the chroma similarity to the content clip (1 = same notes; the style clip scores "
          f"{melody_kept(style[:content.shape[0]], content):.2f})")
    start = time.perf_counter()
    original = transfer_lib.transfer_spectrogram(reference, content, style, configs.TransferConfig(
        steps=FLAGS.reference_steps, optimizer="lbfgs", **REFERENCE))
    original_s = time.perf_counter() - start
    target = original.history[-1]["style_loss"]
    print(f"    original: {original_s:7.1f} s, style loss {target:.4g} after {len(original.history) - 1} iterations, "
          f"melody {melody_kept(original.log_magnitude, content):.2f}")
    for name, config in (("ours, L-BFGS", dict(optimizer="lbfgs")), ("ours, Adam", dict(optimizer="adam"))):
        seconds, result = time_to_loss(model, content, style, config, target, FLAGS.reference_steps)
        print(f"    {name:>12}: reached it after {seconds:7.1f} s ({seconds / original_s:5.1%} of the original's "
              f"time); after {len(result.history) - 1} steps ({result.precision}) the loss is "
              f"{result.history[-1]['style_loss']:.4g}, melody {melody_kept(result.log_magnitude, content):.2f}")
    start = time.perf_counter()
    default = transfer_lib.transfer_spectrogram(model, content, style, configs.TransferConfig())
    default_s = time.perf_counter() - start
    final = default.history[-1]["style_loss"]
    print(f"    defaults ({configs.TransferConfig().optimizer}, {configs.TransferConfig().steps} steps): "
          f"{default_s:.1f} s ({default_s / original_s:.1%} of the original's time), style loss {final:.4g} "
          f"({'at least' if final <= target else 'short of'} the original's), "
          f"melody {melody_kept(default.log_magnitude, content):.2f}")


def memory_and_scaling() -> None:
    import tempfile

    print("(d) the transfer command with its defaults, in a fresh process: wall time (start-up included), time per "
          "second of audio, peak RSS")
    lengths = [FLAGS.seconds, 60.0, FLAGS.long_seconds] if FLAGS.scaling else [FLAGS.seconds]
    with tempfile.TemporaryDirectory() as folder:
        for seconds in lengths:
            report = run_child(folder, seconds)
            print(f"    {seconds:5.0f} s clip ({report['chunks']} chunks): {report['wall_s']:7.1f} s, "
                  f"{report['wall_s'] / seconds:5.2f} s per second of audio, peak RSS {report['peak_rss_mb']:6.0f} "
                  f"MB, style loss {report['style_loss']:.4g}")
        if FLAGS.compare_flags:
            report = run_child(folder, FLAGS.seconds, FLAGS.compare_flags)
            print(f"    {FLAGS.seconds:5.0f} s clip with {FLAGS.compare_flags}: {report['wall_s']:7.1f} s, "
                  f"{report['wall_s'] / FLAGS.seconds:5.2f} s per second of audio, peak RSS "
                  f"{report['peak_rss_mb']:6.0f} MB")


def speech_methods() -> None:
    import tempfile

    print(f"(f) the transfer command on {FLAGS.seconds:g} s of the example speech pair, fresh process each: wall time "
          "(start-up included), time per second of audio, peak RSS")
    with tempfile.TemporaryDirectory() as folder:
        for extra in ("", "--method=gram"):
            report = run_child(folder, FLAGS.seconds, extra, pair="speech")
            print(f"    {extra or 'defaults':>14} ({report['method']}): {report['wall_s']:7.1f} s, "
                  f"{report['wall_s'] / FLAGS.seconds:5.2f} s per second of audio, peak RSS "
                  f"{report['peak_rss_mb']:6.0f} MB")


def trade_offs(model) -> None:
    defaults = configs.TransferConfig()
    print("(e) shorter runs and L-BFGS against the defaults, on the shipped pairs: wall time, style loss, content "
          "loss (distance of the features from the content clip's; it grows as the style takes over), melody")
    for pair, (content_name, style_name) in EXAMPLE_PAIRS.items():
        content_wave, rate = audio_io.load_audio(os.path.join(EXAMPLES, content_name))
        style_wave, _ = audio_io.load_audio(os.path.join(EXAMPLES, style_name), sample_rate=rate)
        content, style = (spectral_ops.log_magnitude_spectrogram(wave, frame_length=FRAME_LENGTH, frame_step=FRAME_STEP)
                          for wave in (content_wave, style_wave))
        print(f"    {pair} ({content.shape[0] * FRAME_STEP / rate:.1f} s at {rate} Hz)")
        for optimizer, steps in (("adam", 25), ("adam", 50), ("adam", defaults.steps),
                                 ("lbfgs", 5), ("lbfgs", 10), ("lbfgs", 20), ("lbfgs", 40)):
            start = time.perf_counter()
            result = transfer_lib.transfer_spectrogram(model, content, style,
                                                   configs.TransferConfig(optimizer=optimizer, steps=steps))
            seconds = time.perf_counter() - start
            final = result.history[-1]
            label = f"{optimizer} {steps}" + (" (defaults)" if (optimizer, steps) == (defaults.optimizer,
                                                                                      defaults.steps) else "")
            print(f"      {label:>18}: {seconds:5.1f} s, style loss {final['style_loss']:.3g}, content loss "
                  f"{final['content_loss']:.3f}, melody {melody_kept(result.log_magnitude, content, rate):.2f}")


def main(argv):
    del argv
    if FLAGS.child:
        child(FLAGS.child)
        return
    print("(a) matmul throughput, 4096 x 4096")
    rates = {"float32": matmul_rate(tf.float32), "bfloat16": matmul_rate(tf.bfloat16)}
    for name, rate in rates.items():
        print(f"    {name:>8}: {rate:6.1f} GFLOP/s")
    content, style = log_magnitudes(FLAGS.seconds, FLAGS.seconds)
    model = registry.build_model("random_cnn")
    model(content[tf.newaxis])  # builds the filters for this bin count
    reference = ReferenceCNN(model)
    if "b" in FLAGS.parts:
        step_times(rates, model, reference, content, style)
    if "c" in FLAGS.parts:
        whole_transfers(model, reference, content, style)
    if "d" in FLAGS.parts:
        memory_and_scaling()
    if "e" in FLAGS.parts:
        trade_offs(model)
    if "f" in FLAGS.parts:
        speech_methods()


if __name__ == "__main__":
    app.run(main)
