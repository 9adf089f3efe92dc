"""Is the tf.data pipeline fast enough to keep training fed? Both rates measured in the same run.

    python benchmarks/input_pipeline.py [--data_dir=DIR] [--batch_size=16] [--batches=40]

Prints examples/s of the input pipeline alone (augmentation on and off, after the decode cache is warm) and
examples/s one training step of each trainable model consumes (default config, fixed batch, no pipeline), then the
ratio of the augmented pipeline's rate to the fastest model's. The target is at least 5x. Without --data_dir it
generates a VCTK-style folder of synthetic 3 s clips at 16 kHz so that it runs anywhere.
"""

import os
import tempfile
import time

from absl import app, flags

from tfstyle import configs, data, registry, spectral_ops, train_lib

import keras  # noqa: E402  (after tfstyle, which quietens TensorFlow's start-up logging)
import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import tensorflow as tf  # noqa: E402

flags.DEFINE_string("data_dir", None, "Dataset folder; default: generated synthetic speakers.")
flags.DEFINE_integer("batch_size", 16, "Batch size of pipeline and training steps.")
flags.DEFINE_integer("batches", 40, "Timed batches per measurement.")
FLAGS = flags.FLAGS

SAMPLE_RATE = 16000


def synthetic_corpus(folder: str, speakers: int = 6, clips: int = 4, seconds: float = 3.0) -> str:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    for s in range(speakers):
        os.makedirs(os.path.join(folder, "wav48", f"p{s:03d}"))
        for c in range(clips):
            f0 = 90.0 + 40 * s + 5 * c
            tone = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 12))
            envelope = 0.5 + 0.5 * np.sin(2 * np.pi * (2 + s) * t) ** 2
            soundfile.write(os.path.join(folder, "wav48", f"p{s:03d}", f"{c}.wav"),
                            (0.3 * tone * envelope / np.abs(tone).max()).astype(np.float32), SAMPLE_RATE)
    return folder


def examples_per_second(dataset: tf.data.Dataset, batches: int, batch_size: int) -> float:
    iterator = iter(dataset)
    for _ in range(3):  # fill the decode cache and the prefetch buffer
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def training_examples_per_second(name: str, batch: dict, batches: int, batch_size: int) -> float:
    model = registry.build_model(name)
    optimizer = keras.optimizers.Adam(1e-3)

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            losses = model.compute_losses(batch, training=True)
        gradients = tape.gradient(losses["total_loss"], model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return losses["total_loss"]

    for _ in range(2):
        step(batch).numpy()
    start = time.perf_counter()
    for _ in range(batches):
        step(batch).numpy()
    return batches * batch_size / (time.perf_counter() - start)


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = FLAGS.data_dir or synthetic_corpus(scratch)
        config = configs.DataConfig(data_dir=data_dir, sample_rate=SAMPLE_RATE)
        print(f"data: {data_dir if FLAGS.data_dir else 'synthetic 6 speakers x 4 clips x 3 s'}, "
              f"batch {FLAGS.batch_size}, {FLAGS.batches} batches per measurement")
        dataset = data.AudioDataset(config)
        rates = {}
        for augment in (True, False):
            rates[augment] = examples_per_second(dataset.train(FLAGS.batch_size, augment_clips=augment),
                                                 FLAGS.batches, FLAGS.batch_size)
            print(f"pipeline, augmentation {'on ' if augment else 'off'}: {rates[augment]:8.0f} examples/s")
        speech_batch = next(iter(dataset.train(FLAGS.batch_size, augment_clips=False)))
        consumption = {}
        for name in train_lib.trainable_models():
            model_rate = registry.lookup(name).config_class().sample_rate
            batch = speech_batch
            if model_rate != SAMPLE_RATE:  # music models: the same clips at their own rate
                waveform = tf.random.normal([FLAGS.batch_size, model_rate]) * 0.1
                batch = {"waveform": waveform, "label": speech_batch["label"],
                         "log_magnitude": spectral_ops.log_magnitude_spectrogram(waveform)}
            consumption[name] = training_examples_per_second(name, batch, max(5, FLAGS.batches // 4),
                                                             FLAGS.batch_size)
            print(f"training step, {name:>16}: {consumption[name]:8.0f} examples/s")
        fastest = max(consumption, key=consumption.get)
        ratio = rates[True] / consumption[fastest]
        print(f"augmented pipeline / fastest model ({fastest}): {ratio:.1f}x "
              f"({'meets' if ratio >= 5 else 'misses'} the 5x target)")


if __name__ == "__main__":
    app.run(main)
