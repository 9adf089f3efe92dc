"""How many files per second does `tfstyle embed` get through, against one process calling the SavedModel in a loop?

    python benchmarks/embed_throughput.py [--files=200] [--seconds=1] [--model=conv_ae]

Everything is measured in the same run on the same folder of synthetic clips (harmonic tones at the model's rate,
--seconds long), each path reading, decoding and embedding every file:

  loop       one process: Embedder.embed_file on each file in turn (the single-file path, model loaded once)
  beam 1     the Beam pipeline on the DirectRunner with one worker process (multi_processing mode)
  beam 2     the same with two worker processes

Wall times include the pipeline's start-up (its workers load TensorFlow and the model), so the pipeline's rate
rises with the number of files; ratios are against the loop.
"""

import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from tfstyle import audio_io, embedding

import numpy as np  # noqa: E402  (after tfstyle, which quietens TensorFlow's start-up logging)

flags.DEFINE_integer("files", 200, "Files to embed.")
flags.DEFINE_float("seconds", 1.0, "Length of each file.")
flags.DEFINE_string("model", "conv_ae", "Zoo name or SavedModel path.")
FLAGS = flags.FLAGS


def write_clips(folder: str, count: int, seconds: float, rate: int) -> list[str]:
    t = np.arange(int(seconds * rate)) / rate
    paths = []
    for i in range(count):
        f0 = 110.0 * 2 ** (i % 24 / 12)
        tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 7)) * np.exp(-2 * t)
        paths.append(os.path.join(folder, f"clip{i:05d}.wav"))
        with open(paths[-1], "wb") as f:
            f.write(audio_io.encode_wav((0.3 * tone / np.abs(tone).max()).astype(np.float32), rate))
    return paths


def loop(model_path: str, paths: list[str]) -> float:
    start = time.perf_counter()
    embedder = embedding.Embedder(model_path)
    for path in paths:
        embedder.embed_file(path)
    return time.perf_counter() - start


def beam(model_path: str, folder: str, workers: int) -> float:
    output = tempfile.mkdtemp(prefix="embeddings-")
    os.rmdir(output)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tfstyle.embed", f"--model={model_path}", f"--input={folder}/*.wav",
                    f"--output={output}", f"--direct_num_workers={workers}",
                    "--direct_running_mode=multi_processing"], check=True, capture_output=True)
    return time.perf_counter() - start


def main(argv):
    del argv
    model_path = embedding.resolve_saved_model(FLAGS.model)
    rate = embedding.Embedder(model_path).sample_rate
    with tempfile.TemporaryDirectory() as folder:
        paths = write_clips(folder, FLAGS.files, FLAGS.seconds, rate)
        print(f"{FLAGS.files} files of {FLAGS.seconds:g} s at {rate} Hz through {model_path} (serving_default)")
        reference = loop(model_path, paths)
        print(f"    loop (one process, model loaded once): {reference:6.1f} s, {FLAGS.files / reference:6.1f} files/s")
        for workers in (1, 2):
            seconds = beam(model_path, folder, workers)
            print(f"    beam, {workers} worker{'s' if workers > 1 else ' '}: {seconds:16.1f} s, "
                  f"{FLAGS.files / seconds:6.1f} files/s, {reference / seconds:.2f}x the loop's rate")


if __name__ == "__main__":
    app.run(main)
