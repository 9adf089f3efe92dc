"""Installs the `tfstyle` package (and nothing else) with its console script and the released SavedModels.

`saved_models/` stays at the top of the repository, where TF Serving users expect it; the install maps it into the
package as `tfstyle/saved_models/`, so an installed tfstyle finds its shipped models from any folder.
"""

import setuptools

setuptools.setup(
    name="tfstyle",
    version="0.1.0",
    description="A TensorFlow/Keras model zoo for neural audio style transfer.",
    python_requires=">=3.11,<3.12",
    packages=[*setuptools.find_packages(include=["tfstyle", "tfstyle.*"]), "tfstyle.saved_models"],
    package_dir={"tfstyle.saved_models": "saved_models"},
    package_data={"tfstyle.saved_models": ["models.config", "*/*/*.pb", "*/*/assets/*", "*/*/variables/*"]},
    install_requires=[
        # tensorflow-io 0.37's native audio ops are built against TF 2.17 and fail to load with newer TF.
        "tensorflow==2.17.1",
        "tensorflow-io==0.37.1",
        "keras>=3.4,<3.7",
        "numpy==1.26.4",  # TF 2.17 is built against NumPy 1.x
        "librosa==0.10.2.post1",
        "absl-py>=2.1,<3",
        "matplotlib>=3.8,<4",
    ],
    extras_require={
        # Apache Beam runs `tfstyle embed` and `tfstyle transfer --pairs` on many files (tfstyle.pipelines), on
        # one machine or a Flink, Spark or Dataflow cluster. TF 2.17 needs protobuf 4; proto-plus 1.27+ needs 6.
        "beam": ["apache-beam[tfrecord]==2.77.0", "protobuf>=4.25,<5", "proto-plus>=1.26,<1.27",
                 "google-crc32c>=1.5,<2"],  # Beam's fast TFRecord checksums (its [tfrecord] extra brings crcmod)
        # tensorflow-serving-api: the PredictRequest protos TF Serving's clients send, to test our signatures with.
        # pytest-xdist: the suite on every core (most slow tests wait on one-threaded process start-up).
        "test": ["pytest>=8,<10", "pytest-xdist>=3.5,<4", "hypothesis>=6.100,<7", "tensorflow-serving-api==2.17.1"],
    },
    entry_points={"console_scripts": ["tfstyle=tfstyle.cli:main"]},
)
