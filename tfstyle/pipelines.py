"""Apache Beam pipelines: embeddings of many files, and many transfers, on one machine or a cluster.

Beam is an optional extra (`pip install "tfstyle[beam]"`): the commands import this module through
`tfstyle.cli.beam_pipelines()`, which says how to install it when it is missing. The same pipeline runs on Beam's
DirectRunner (`--direct_num_workers=2 --direct_running_mode=multi_processing` uses two processes here) and on
Flink, Spark or Dataflow: the commands pass every flag that is not their own to Beam as a pipeline option.
"""

import csv
import dataclasses
import os
import shutil
import tempfile

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import ModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from tfstyle import embedding
from tfstyle.errors import InputError

FAILED_FILE = "failed.tsv"  # one line per input that could not be used: its path (or pair), a tab, the reason


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    """PipelineOptions from the flags a command did not know; a flag Beam does not know either is an error,
    rather than being dropped with a warning as Beam itself would."""
    known = set(PipelineOptions([]).get_all_options())
    for arg in beam_args:
        name = arg.lstrip("-").split("=", 1)[0].replace("-", "_")
        if not arg.startswith("--") or name not in known:
            raise InputError(f"unknown flag {arg.split('=', 1)[0]} (neither this command's nor a Beam pipeline "
                             "option; see --help)")
    if not any(arg.startswith("--default_sdk_harness_log_level") for arg in beam_args):
        # Beam's worker processes log every channel they open at INFO; a user asking for --direct_num_workers=2
        # should see tfstyle's lines and real problems, not the harness's start-up.
        beam_args = [*beam_args, "--default_sdk_harness_log_level=ERROR"]
    return PipelineOptions(beam_args)


@dataclasses.dataclass(frozen=True)
class PipelineSummary:
    """What a pipeline did: records (or outputs) written, inputs that failed, and where both went."""

    written: int
    failed: list[str]
    output_dir: str


def _read_lines(folder: str, prefix: str) -> list[str]:
    lines = []
    for name in sorted(os.listdir(folder)):
        if name.startswith(prefix):
            with open(os.path.join(folder, name)) as f:
                lines.extend(line.rstrip("\n") for line in f if line.strip())
    return lines


def _merge_failures(folder: str) -> list[str]:
    """Beam writes text in shards (failed-00000-of-00002.tsv ...): one failed.tsv instead, sorted."""
    lines = sorted(_read_lines(folder, "failed-"))
    for name in os.listdir(folder):
        if name.startswith("failed-"):
            os.remove(os.path.join(folder, name))
    if lines:
        with open(os.path.join(folder, FAILED_FILE), "w") as f:
            f.write("\n".join(lines) + "\n")
    return lines


# Embeddings ----------------------------------------------------------------------------------------------------


def embed_files(paths: list[str], *, model_path: str, signature: str, output_dir: str, beam_args: list[str],
                parquet: bool = False, max_batch_size: int = 16) -> PipelineSummary:
    """Embeds every file of `paths` into `output_dir`: embeddings-*.tfrecord (tf.train.Example records, see
    tfstyle.embedding), embeddings-*.parquet if `parquet`, and failed.tsv for files that could not be read.

    The output folder is written under a temporary name and renamed when the pipeline has finished, so a failed
    run leaves no partial output.
    """
    embedder = embedding.Embedder(model_path, signature)  # here first: a bad model or signature fails at once
    schema = _parquet_schema(embedder) if parquet else None
    staging = _staging_folder(output_dir)
    try:
        with beam.Pipeline(options=pipeline_options(beam_args)) as pipeline:
            decoded = (pipeline
                       | "Files" >> beam.Create(paths)
                       | "Decode" >> beam.ParDo(DecodeAudio(model_path, signature)).with_outputs("failed", main="ok"))
            records = (decoded.ok
                       | "Embed" >> RunInference(EmbedderHandler(model_path, signature, max_batch_size)))
            (records
             | "Serialise" >> beam.Map(embedding.to_example)
             | "WriteTFRecord" >> beam.io.WriteToTFRecord(os.path.join(staging, "embeddings"),
                                                          file_name_suffix=".tfrecord"))
            if parquet:
                (records
                 | "Rows" >> beam.Map(_parquet_row)
                 | "WriteParquet" >> beam.io.WriteToParquet(os.path.join(staging, "embeddings"), schema,
                                                            file_name_suffix=".parquet"))
            decoded.failed | "WriteFailed" >> beam.io.WriteToText(os.path.join(staging, "failed"),
                                                                  file_name_suffix=".tsv")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # a failed or interrupted run leaves nothing behind
        raise
    failed = _merge_failures(staging)
    os.replace(staging, output_dir)
    return PipelineSummary(written=len(paths) - len(failed), failed=failed, output_dir=output_dir)


class DecodeAudio(beam.DoFn):
    """path -> (path, waveform at the model's rate), or a line "path<TAB>reason" on the output tagged "failed"."""

    def __init__(self, model_path: str, signature: str):
        self.model_path, self.signature = model_path, signature

    def setup(self):
        self.embedder = embedding.Embedder(self.model_path, self.signature)

    def process(self, path):
        try:
            yield path, self.embedder.read(path)
        except InputError as e:
            yield beam.pvalue.TaggedOutput("failed", f"{path}\t{e}")


class EmbedderHandler(ModelHandler):
    """A RunInference ModelHandler around `embedding.Embedder`: (path, waveform) -> record.

    Beam's own TensorFlow handler loads through tf.keras.models.load_model, which Keras 3 refuses for SavedModels;
    this one loads with tf.saved_model.load (through tfstyle.loading) and calls one signature. Waveforms of one
    length in a batch run as one call; the records equal `Embedder.embed_file`'s.
    """

    def __init__(self, model_path: str, signature: str, max_batch_size: int):
        super().__init__(min_batch_size=1, max_batch_size=max_batch_size)
        self.model_path, self.signature = model_path, signature

    def load_model(self) -> embedding.Embedder:
        return embedding.Embedder(self.model_path, self.signature)

    def run_inference(self, batch, model, inference_args=None):
        records = [None] * len(batch)
        by_length = {}
        for index, (_, waveform) in enumerate(batch):
            by_length.setdefault(waveform.shape[0], []).append(index)
        for indices in by_length.values():
            outputs = model.outputs(np.stack([batch[i][1] for i in indices]))
            for i, output in zip(indices, outputs):
                records[i] = model.record(batch[i][0], output)
        return records

    def get_num_bytes(self, batch) -> int:
        return sum(waveform.nbytes for _, waveform in batch)

    def get_metrics_namespace(self) -> str:
        return "tfstyle_embed"


def _parquet_schema(embedder: embedding.Embedder):
    """The Parquet schema of `embedder`'s records: learnt from one second of silence run through it."""
    import pyarrow

    outputs = embedder.outputs(np.zeros([1, embedder.sample_rate], np.float32))[0]
    return pyarrow.schema([("path", pyarrow.string()), ("model", pyarrow.string()), ("version", pyarrow.int64()),
                           ("signature", pyarrow.string())]
                          + [(name, pyarrow.list_(pyarrow.float32())) for name in outputs]
                          + [(f"{name}/shape", pyarrow.list_(pyarrow.int64())) for name in outputs])


def _parquet_row(record: dict) -> dict:
    row = {key: record[key] for key in ("path", "model", "version", "signature")}
    for name, value in record["outputs"].items():
        row[name] = np.ravel(value).tolist()
        row[f"{name}/shape"] = list(np.shape(value))
    return row


def check_new_folder(output_dir: str) -> None:
    """InputError unless `output_dir` can be created (or is an empty folder)."""
    if os.path.exists(output_dir) and (not os.path.isdir(output_dir) or os.listdir(output_dir)):
        raise InputError(f"{output_dir} exists and is not an empty folder; choose a new --output")
    parent = os.path.dirname(os.path.abspath(output_dir))
    if not os.path.isdir(parent):
        raise InputError(f"output folder's parent does not exist: {parent}")


def _staging_folder(output_dir: str) -> str:
    check_new_folder(output_dir)
    parent = os.path.dirname(os.path.abspath(output_dir))
    if os.path.isdir(output_dir):
        os.rmdir(output_dir)
    return tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.partial-", dir=parent)


# Transfers -----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pair:
    """One row of a pairs CSV: content and style files, and the output's name (a .wav in the output folder)."""

    content: str
    style: str
    output: str

    def line(self) -> str:
        return f"{self.content},{self.style},{self.output}"


def read_pairs(path: str) -> list[Pair]:
    """The rows of a pairs CSV with the columns content,style,output (a header row; relative paths are relative
    to the CSV's folder)."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such pairs file")
    folder = os.path.dirname(os.path.abspath(path))
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"content", "style", "output"} - set(reader.fieldnames or ())
        if missing:
            raise InputError(f"{path}: needs a header row with the columns content,style,output "
                             f"(missing: {', '.join(sorted(missing))})")
        pairs = []
        for number, row in enumerate(reader, start=2):
            if not all((row[key] or "").strip() for key in ("content", "style", "output")):
                raise InputError(f"{path}:{number}: content, style and output must all be given")
            output = row["output"].strip()
            if os.sep in output or not output.lower().endswith(".wav"):
                raise InputError(f"{path}:{number}: output must be a .wav file name, got {output!r}")
            pairs.append(Pair(*(os.path.join(folder, row[key].strip()) for key in ("content", "style")), output))
    if not pairs:
        raise InputError(f"{path}: no pairs")
    names = [pair.output for pair in pairs]
    if len(set(names)) != len(names):
        raise InputError(f"{path}: two rows write the same output")
    return pairs


def transfer_pairs(pairs: list[Pair], *, output_dir: str, transfer, beam_args: list[str]) -> PipelineSummary:
    """Runs `transfer(pair, output_path)` for every pair in a Beam pipeline, writing into `output_dir`.

    `transfer` must be picklable (it runs in Beam's workers) and raise InputError for a pair that cannot be done;
    each such pair is listed in output_dir/failed.tsv with its reason, and the others go on. Each transfer writes
    its files atomically, so pairs whose outputs already exist are done: a rerun skips them.
    """
    os.makedirs(output_dir, exist_ok=True)
    failures_dir = tempfile.mkdtemp(prefix=".failed-", dir=output_dir)
    try:
        with beam.Pipeline(options=pipeline_options(beam_args)) as pipeline:
            done = (pipeline
                    | "Pairs" >> beam.Create(pairs)
                    | "Reshuffle" >> beam.Reshuffle()  # one pair per bundle where it can: spread over workers
                    | "Transfer" >> beam.ParDo(TransferPair(transfer, output_dir)).with_outputs("failed", main="done"))
            done.failed | "WriteFailed" >> beam.io.WriteToText(os.path.join(failures_dir, "failed"),
                                                               file_name_suffix=".tsv")
        failed = _merge_failures(failures_dir)
        target = os.path.join(output_dir, FAILED_FILE)
        if failed:
            os.replace(os.path.join(failures_dir, FAILED_FILE), target)
        elif os.path.exists(target):
            os.remove(target)  # from an earlier run whose failures are now done
    finally:
        shutil.rmtree(failures_dir, ignore_errors=True)
    return PipelineSummary(written=len(pairs) - len(failed), failed=failed, output_dir=output_dir)


class TransferPair(beam.DoFn):
    """Pair -> its outputs written, or a line "content,style,output<TAB>reason" on the output tagged "failed"."""

    def __init__(self, transfer, output_dir: str):
        self.transfer, self.output_dir = transfer, output_dir

    def process(self, pair: Pair):
        try:
            self.transfer(pair, os.path.join(self.output_dir, pair.output))
            yield pair.output
        except InputError as e:
            yield beam.pvalue.TaggedOutput("failed", f"{pair.line()}\t{e}")
