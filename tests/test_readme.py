"""The README's two set-up commands stay true: CI runs the second, and the first runs here on the shipped clips."""

import json
import os
import re
import shlex
import sys

import pytest
import soundfile

from conftest import REPO, run_command


def setup_commands():
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    return re.findall(r"^pip install .*$", readme, flags=re.MULTILINE)


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_second():
    commands = setup_commands()
    assert len(commands) == 2, commands
    with open(os.path.join(REPO, ".ci", "run")) as f:
        ci_lines = [line.strip() for line in f]
    assert commands[1] in ci_lines


@pytest.mark.slow
def test_readme_main_job_runs_on_the_shipped_examples(tmp_path):
    install, job = setup_commands()[0].split(" && ")
    assert install == "pip install ."
    args = shlex.split(job)
    assert args[:3] == ["python", "-m", "tfstyle.transfer"]
    flags = dict(arg.split("=", 1) for arg in args[3:])
    for path in (flags["--content"], flags["--style"]):
        assert os.path.exists(os.path.join(REPO, path)), path
    output = tmp_path / os.path.basename(flags["--output"])
    # The README's command with fewer steps and the output moved out of the checkout (later flags win).
    completed = run_command([sys.executable, *args[1:], "--steps=3", "--griffin_lim_iters=5", f"--output={output}"])
    assert completed.returncode == 0, completed.stderr
    audio, rate = soundfile.read(output)
    content, content_rate = soundfile.read(os.path.join(REPO, flags["--content"]))
    assert rate == content_rate and len(audio) == len(content)
    report = json.loads(output.with_suffix(".json").read_text())
    assert report["loss_end"]["style_loss"] < report["loss_start"]["style_loss"]
    assert output.with_suffix(".png").exists()


PARSE_FLAGS = """
import importlib.util, sys
from absl import flags
path, argv = sys.argv[1], sys.argv[1:]
spec = importlib.util.spec_from_file_location("benchmark", path)
spec.loader.exec_module(importlib.util.module_from_spec(spec))  # defines its flags; main() does not run
flags.FLAGS(argv)
"""


@pytest.mark.slow
def test_readme_benchmark_commands_name_real_scripts_and_flags():
    """Each `python benchmarks/...` command in the README names a script, and flags, that exist."""
    with open(os.path.join(REPO, "README.md")) as f:
        commands = sorted(set(re.findall(r"`python (benchmarks/[\w/]+\.py[^`]*)`", f.read())))
    assert len(commands) >= 3, commands
    for command in commands + ["benchmarks/griffin_lim.py --no_such_flag=1"]:
        completed = run_command([sys.executable, "-c", PARSE_FLAGS, *shlex.split(command)])
        assert (completed.returncode == 0) == ("no_such_flag" not in command), (command, completed.stderr[-500:])


@pytest.mark.slow
def test_every_python_block_in_the_readme_runs():
    with open(os.path.join(REPO, "README.md")) as f:
        blocks = re.findall(r"^```python\n(.*?)^```", f.read(), flags=re.MULTILINE | re.DOTALL)
    assert blocks
    for block in blocks:
        completed = run_command([sys.executable, "-c", block])
        assert completed.returncode == 0, (block, completed.stderr[-2000:])
