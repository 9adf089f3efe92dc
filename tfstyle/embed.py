"""Embed many audio files with a SavedModel signature, as an Apache Beam pipeline (needs tfstyle[beam]).

    python -m tfstyle.embed --model=conv_ae --input='corpus/**/*.wav' --output=embeddings/ \\
        --direct_num_workers=2 --direct_running_mode=multi_processing

writes embeddings/embeddings-*.tfrecord: one tf.train.Example per file (path, model, version, signature, and each
output's vector or feature-map statistics with its shape; see tfstyle.embedding), embeddings-*.parquet with
--parquet, and failed.tsv listing each file that could not be read, with the reason (the others go on). Flags that
are not tfstyle's go to Beam as pipeline options (--runner, --direct_num_workers, ...), so the same command runs
on a Flink, Spark or Dataflow cluster.
"""

import glob
import os
import sys

from absl import flags

from tfstyle import cli, embedding
from tfstyle.errors import InputError

FLAGS = flags.FLAGS


def _define_flags() -> None:
    flags.DEFINE_string("model", None, "Zoo name (its newest shipped SavedModel) or a SavedModel version folder.")
    flags.DEFINE_string("input", None, "Audio files: a glob such as 'corpus/**/*.wav' (** matches any depth).")
    flags.DEFINE_string("output", None, "A new (or empty) folder for the records.")
    flags.DEFINE_string("signature", embedding.DEFAULT_SIGNATURE, "The signature to run: serving_default, or "
                        "one that takes a log-magnitude spectrogram (features, encode).")
    flags.DEFINE_bool("parquet", False, "Also write the records as Parquet.")
    flags.DEFINE_integer("batch_size", 16, "Most files per model call (files of one length are batched).")


def main(argv: list[str]) -> None:
    for name in ("model", "input", "output"):
        if not FLAGS[name].value:
            raise InputError(f"--{name} is required")
    if FLAGS.batch_size < 1:
        raise InputError(f"--batch_size must be at least 1, got {FLAGS.batch_size}")
    pipelines = cli.beam_pipelines()
    pipelines.check_new_folder(FLAGS.output)
    pipelines.pipeline_options(argv[1:])  # an unknown flag fails here, before any work
    paths = sorted(path for path in glob.glob(FLAGS.input, recursive=True) if not os.path.isdir(path))
    if not paths:
        raise InputError(f"no files match --input={FLAGS.input}")
    model_path = embedding.resolve_saved_model(FLAGS.model)
    print(f"tfstyle: embedding {len(paths)} files with {model_path} ({FLAGS.signature})", file=sys.stderr)
    summary = pipelines.embed_files(paths, model_path=model_path, signature=FLAGS.signature, output_dir=FLAGS.output,
                                    beam_args=argv[1:], parquet=FLAGS.parquet, max_batch_size=FLAGS.batch_size)
    message = f"tfstyle: wrote {summary.written} records to {summary.output_dir}"
    if summary.failed:
        message += f"; {len(summary.failed)} files failed, listed in {pipelines.FAILED_FILE}"
    print(message, file=sys.stderr)


def run(argv: list[str] | None = None) -> None:
    _define_flags()
    cli.run(main, argv, other_flags_to_main=True)


if __name__ == "__main__":
    run()
