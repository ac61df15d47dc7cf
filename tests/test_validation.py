"""Config and checkpoint values from strangers (issue 10, item 8).

Every bad value in a TOML file, a command line, an API call or a checkpoint is a one-line
error before any work: a :class:`ConfigError` naming the file, the field (by its path in the
config, e.g. ``models[1].batch_size``), the value and the allowed range; through the CLI,
exit status 2 and that one line on stderr, no traceback and no file written. Sizes from a
checkpoint are checked before any module is built. Environment failures (a download that
does not match its recorded hash, a full disk) are one line with exit status 1, and a second
failure while writing figures never hides the first.

Longer than 450 lines: train configs, comparison configs, checkpoints and environment failures
share the CLI's one-line check (``one_line_error``) and a trained run to spoil (``trained_run``).
"""

from __future__ import annotations

import errno
import os
import pickle
import random
import re
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from sketchgen import cli, runtime
from sketchgen.comparison import config as compare
from sketchgen.comparison.plan import plan_runs
from sketchgen.data.download import DownloadOptions
from sketchgen.data.sources import resolve
from sketchgen.errors import CheckpointError, ConfigError
from sketchgen.evaluation.classifier import Classifier, ClassifierConfig, build_model
from sketchgen.evaluation.evaluator import load_classifier
from sketchgen.evaluation.evaluator import save_classifier as write_classifier
from sketchgen.models import registry
from sketchgen.models.gan.config import GanConfig
from sketchgen.models.sketch_rnn.config import SketchRNNConfig
from sketchgen.training.checkpoints import read_checkpoint
from sketchgen.training.config import TrainConfig, load_toml
from sketchgen.training.harness import train
from sketchgen.training.run_folder import CHECKPOINT, GIF
from sketchgen.training.sampling import load_run

STEPS = "[1, 1_000_000_000]"
TINY = ["--categories", "eye", "mouth", "--per-class", "20", "--batch-size", "4",
        "--device", "cpu", "--no-progress", "--set", "width=8"]


def one_line_error(capsys, argv: list[str], status: int = 2) -> str:
    """Run the CLI; it must exit with ``status`` and exactly one line on stderr."""
    assert cli.main(argv) == status
    error = capsys.readouterr().err
    assert "Traceback" not in error and len(error.splitlines()) == 1, error
    return error.strip()


# -- train configs: TOML, CLI and API alike ------------------------------------------------------

TRAIN_TOML = {"model": '"dcgan"', "categories": '["eye", "mouth"]', "per_class": "20",
              "device": '"cpu"', "progress": "false"}

TOML_CASES = [  # (a line of the TOML file, what the error must say)
    ("steps = true", f"steps must be an integer in {STEPS}, got true"),
    ("steps = 2.5", f"steps must be an integer in {STEPS}, got 2.5"),
    ("out = 5", "out must be a path without NUL or control characters, got 5"),
    ("batch_size = 1e9", "batch_size must be an integer in [1, 65_536], got 1000000000.0"),
    ("batch_size = 1_000_000_000", "batch_size must be an integer in [1, 65_536], got 1000000000"),
    ('out = "runs/a\\u0000b"', r"out must be a path without NUL or control characters, "
                                r"got 'runs/a\x00b'"),
    ("size = 0", "size must be an integer in [1, 1_024], got 0"),
    ('categories = ["eye", 7]', "categories[1] must be a string without control characters, "
                                "got 7"),
    ("model_options = 3", "model_options must be a table, got 3"),
]


def train_toml(path: Path, out: Path, line: str = "") -> Path:
    """A small dcgan run's TOML config with ``line`` replacing or adding one setting."""
    lines = TRAIN_TOML | {"out": f'"{out}"'}
    if line:
        key, value = line.split(" = ", 1)
        lines[key] = value
    path.write_text("".join(f"{key} = {value}\n" for key, value in lines.items()))
    return path


@pytest.mark.parametrize(("line", "message"), TOML_CASES)
def test_bad_train_toml_is_one_line_before_any_work(tmp_path, capsys, line, message):
    path = train_toml(tmp_path / "run.toml", tmp_path / "run", line)
    with pytest.raises(ConfigError) as caught:
        load_toml(path)
    assert str(caught.value) == f"{path}: {message}"
    error = one_line_error(capsys, ["train", "--config", str(path)])
    assert error == f"sketchgen train: error: {path}: {message}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.toml"]  # nothing written


def test_bad_model_option_in_toml_names_its_table(tmp_path, capsys):
    """Model options are checked by the model's config once the model is known (the command
    line may still name another one), so the message names the table, not the file."""
    path = train_toml(tmp_path / "run.toml", tmp_path / "run")
    path.write_text(path.read_text() + "[model_options]\nwidth = 100_000\n")
    message = "model_options.width must be an integer in [1, 1_024], got 100000"
    with pytest.raises(ConfigError, match=re.escape(message)):
        registry.resolve(load_toml(path))
    assert one_line_error(capsys, ["train", "--config", str(path)]).endswith(message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.toml"]


@pytest.mark.parametrize(("make", "message"), [
    (lambda: TrainConfig(steps=True), f"steps must be an integer in {STEPS}, got true"),
    (lambda: TrainConfig(seed=-1), "seed must be an integer in [0, 9_223_372_036_854_775_807]"),
    (lambda: TrainConfig(per_class=0), "per_class must be None or an integer in [1, 10_000_000]"),
    (lambda: TrainConfig(amp=1), "amp must be true or false, got 1"),
    (lambda: TrainConfig(device="cpu\n"), r"device must be a string without control characters"),
    (lambda: TrainConfig(mirror="a\0b"), "mirror must be None or a path without NUL"),
    (lambda: TrainConfig(out=""), "out must be a path without NUL or control characters, got ''"),
    (lambda: GanConfig(width=100_000), "width must be an integer in [1, 1_024], got 100000"),
    (lambda: GanConfig(lr_g=float("nan")), "lr_g must be a number in (0, 1], got nan"),
    (lambda: GanConfig(betas=(0.5, 1.5)), r"betas[1] must be a number in [0, 1), got 1.5"),
    (lambda: GanConfig(betas=(0.5,)), r"betas must be a list of 2 numbers in [0, 1), got (0.5,)"),
    (lambda: GanConfig(real_target=(1.0, 0.5)), "real_target must be (low, high) with low <= high"),
    (lambda: GanConfig(loss="wasserstein"), "loss must be one of 'bce', 'hinge'"),
    (lambda: GanConfig(latent_dim=1.0), "latent_dim must be an integer in [1, 4_096], got 1.0"),
    (lambda: SketchRNNConfig(num_mixture=0), "num_mixture must be an integer in [1, 100], got 0"),
    (lambda: SketchRNNConfig(mode="gan"), "mode must be one of 'vae', 'unconditional', 'class'"),
    (lambda: SketchRNNConfig(dec_rnn_size=10**6), "dec_rnn_size must be an integer in [1, 4_096]"),
    (lambda: ClassifierConfig(max_epochs=0), "max_epochs must be an integer in [1, 10_000], got 0"),
    (lambda: ClassifierConfig(channels=("ink", "colour")),
     "channels[1] must be one of 'ink', 'order', 'time', got 'colour'"),
    (lambda: compare.ClassifierSettings(valid_fraction=1.0),
     "valid_fraction must be a number in (0, 1), got 1.0"),
    (lambda: compare.ModelSpec("dcgan", steps=10, batch_size=True),
     "batch_size must be an integer in [1, 65_536], got true"),
    (lambda: TrainConfig(categories=("x" * 10**6,)),
     "categories[0] must be at most 4_096 characters, got 1_000_000"),
    (lambda: GanConfig(loss="x" * 10**7), "loss must be at most 4_096 characters, got 10_000_000"),
    (lambda: TrainConfig(categories=[f"c{i}" for i in range(10**6)]),
     "categories must be a list of at most 10_000 entries, got 1_000_000"),
    (lambda: compare.CompareConfig("tiny", ("eye",) * 10_001, ()),
     "categories must be a list of at most 10_000 entries, got 10_001"),
])
def test_api_configs_check_their_fields(make, message):
    with pytest.raises(ConfigError) as caught:
        make()
    assert str(caught.value).startswith(message), str(caught.value)


def test_ints_are_numbers_but_not_the_other_way_round():
    assert GanConfig(lr_g=1).lr_g == 1  # an int where a float belongs is a number
    assert GanConfig(real_target=[0, 1]).real_target == (0, 1)  # TOML lists become tuples


@pytest.mark.parametrize(("argv", "message"), [
    (["dcgan", "--size", "1024", "--set", "width=1024"],
     "model 'dcgan' at 1024 px would have 366_"),
    (["sketch-rnn", "--set", "enc_rnn_size=4096", "--set", "dec_rnn_size=4096", "--set",
      "z_size=4096"], "model 'sketch-rnn' would have 369_963_131 parameters"),
])
def test_sizes_in_range_that_multiply_to_a_huge_model_are_refused_unbuilt(
        tmp_path, capsys, monkeypatch, argv, message):
    def never(*args):
        raise AssertionError("built")
    monkeypatch.setattr(registry.ModelEntry, "build", never)
    error = one_line_error(capsys, ["train", *argv, *TINY[:-2], "--out", str(tmp_path / "run")])
    assert message in error and "parameters; at most 268_435_456" in error
    with pytest.raises(ConfigError, match="the classifier would have 275_274_317_826"):
        ClassifierConfig(width=1024, size=1024)


def test_model_options_from_the_command_line_name_their_path(tmp_path, capsys):
    error = one_line_error(capsys, ["train", "dcgan", *TINY, "--set", "width=100000",
                                    "--out", str(tmp_path / "run")])
    assert error.endswith("model_options.width must be an integer in [1, 1_024], got 100000")
    error = one_line_error(capsys, ["train", "dcgan", *TINY, "--steps", "0",
                                    "--out", str(tmp_path / "run")])
    assert error.endswith(f"steps must be an integer in {STEPS}, got 0")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("part", "message"), [
    (f'categories = ["{"x" * 10**7}"]', "categories[0] must be at most 4_096 characters"),
    (f"categories = {[f'c{i}' for i in range(20_000)]}",
     "categories must be a list of at most 10_000 entries, got 20_000"),
    (f'{"x" * 10**7} = 1', "unknown config field(s): xxx"),
    (f'[model_options]\n{"x" * 10**7} = 1', "model 'dcgan' has no option(s) xxx"),
    ("[model_options]\n" + "".join(f"w{i} = 1\n" for i in range(10**5)),
     "has no option(s) w0, w1, w10, "),
], ids=["10-MB-category", "20_000-categories", "10-MB-key", "10-MB-option", "100_000-options"])
def test_huge_strings_and_lists_in_toml_are_one_short_line(tmp_path, capsys, part, message):
    path = tmp_path / "run.toml"
    path.write_text(f'model = "dcgan"\nout = "{tmp_path / "run"}"\n{part}\n')
    error = one_line_error(capsys, ["train", "--config", str(path)])
    assert message in error and len(error) < 1_000, error[:1_000]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.toml"]


def test_toml_nested_too_deep_for_the_parser_is_one_line(tmp_path, capsys):
    nested = "[" * 100_000 + "]" * 100_000
    path = tmp_path / "run.toml"
    path.write_text(f'model = "dcgan"\nsize = {nested}\n')
    message = f"{path}: nested too deep for the TOML parser"
    assert one_line_error(capsys, ["train", "--config", str(path)]).endswith(message)
    assert one_line_error(capsys, ["compare", str(path)]).endswith(message)
    error = one_line_error(capsys, ["train", "dcgan", "--set", f"width={nested[49_000:-49_000]}"])
    assert "--set width=[[[" in error and error.endswith(": nested too deep for the TOML parser")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.toml"]


@pytest.mark.parametrize("device", ["nonsense", "meta", "cuda:99", "cpu,cuda"])
def test_a_device_torch_cannot_use_is_one_line_before_any_work(tmp_path, capsys, device,
                                                               trained_run):
    error = one_line_error(capsys, ["train", "dcgan", *TINY, "--device", device,
                                    "--out", str(tmp_path / "run")])
    assert error.startswith(f"sketchgen train: error: device {device!r} ")
    error = one_line_error(capsys, ["sample", str(trained_run), "--n", "2", "--device", device,
                                    "-o", str(tmp_path / "s.npy")])
    assert error.startswith(f"sketchgen sample: error: device {device!r} ")
    assert list(tmp_path.iterdir()) == []


def test_nul_in_out_is_one_line_naming_out(tmp_path, capsys):
    out = str(tmp_path / "a\0b")
    error = one_line_error(capsys, ["train", "dcgan", *TINY, "--steps", "1", "--out", out])
    assert error.startswith("sketchgen train: error: out must be a path without NUL or control "
                            "characters, got '") and "a\\x00b" in error
    assert list(tmp_path.iterdir()) == []


# -- comparison configs --------------------------------------------------------------------------

COMPARE_TOML = """name = "tiny"
categories = ["eye", "mouth"]
per_class = 20
{top}
[classifier]
width = 4
{classifier}
[[models]]
model = "dcgan"
steps = 2
batch_size = 4
[models.options]
{options}
[[models]]
model = "sketch-rnn"
{model}
"""


def compare_toml(path: Path, out: Path, part: str = "", line: str = "") -> Path:
    """The tiny comparison with ``line`` added to one ``part``: top, classifier, options (of
    models[0]) or model (models[1])."""
    top = f'out = "{out}"\nn_samples = 10\ncalibration = false'
    parts = {"top": top, "classifier": "", "options": "width = 8",
             "model": "steps = 2\nbatch_size = 4"}
    if part:
        key = line.split(" = ")[0]
        parts[part] = "\n".join([*(kept for kept in parts[part].splitlines()
                                   if not kept.startswith(key + " ")), line])
    path.write_text(COMPARE_TOML.format(**parts))
    return path


@pytest.mark.parametrize(("part", "line", "message"), [
    ("classifier", "max_epochs = 0", "classifier.max_epochs must be an integer in [1, 10_000], "
                                     "got 0"),
    ("model", "batch_size = 1e9", "models[1].batch_size must be an integer in [1, 65_536], "
                                  "got 1000000000.0"),
    ("model", "steps = true", f"models[1].steps must be an integer in {STEPS}, got true"),
    ("model", 'load = "x\\u0007"', r"models[1].load must be None or a path without NUL or control "
                                    r"characters, got 'x\x07'"),
    ("options", "embed_dim = 0", "models[0].options.embed_dim must be an integer in [1, 4_096]"),
    ("options", "width = 100_000", "models[0].options.width must be an integer in [1, 1_024]"),
    ("top", "n_samples = 5", "n_samples must be an integer in [10, 1_000_000], got 5"),
    ("top", "ci_level = 1.0", "ci_level must be a number in (0, 1), got 1.0"),
    ("top", 'out = "r\\u0000"', "out must be None or a path without NUL or control"),
])
def test_bad_compare_toml_is_one_line_before_any_work(tmp_path, capsys, part, line, message):
    path = compare_toml(tmp_path / "tiny.toml", tmp_path / "report", part, line)
    with pytest.raises(ConfigError) as caught:
        compare.load_config(path)
    assert str(caught.value).startswith(f"{path}: {message}"), str(caught.value)
    error = one_line_error(capsys, ["compare", str(path)])
    assert error.startswith(f"sketchgen compare: error: {path}: {message}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]  # nothing written


def test_nul_in_compare_out_is_one_line(tmp_path, capsys):
    path = compare_toml(tmp_path / "tiny.toml", tmp_path / "report")
    error = one_line_error(capsys, ["compare", str(path), "--out", str(tmp_path / "r\0")])
    assert "out must be None or a path without NUL or control characters" in error


# -- checkpoints ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A finished two-step dcgan run (a narrow network on 40 real drawings)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    train(TrainConfig(model="dcgan", categories=("eye", "mouth"), per_class=20, steps=2,
                      batch_size=4, out=str(out), device="cpu", progress=False,
                      model_options={"width": 8}))
    return out


class Payload:
    """Unpickling it would create a file: proof that code ran."""

    marker = ""

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _tampered(change):
    def write(path: Path) -> None:
        checkpoint = torch.load(path, weights_only=True)
        change(checkpoint)
        torch.save(checkpoint, path)
    return write


def _deflated(path: Path) -> None:
    """The same entries, compressed: torch would inflate them, a zip bomb's way in."""
    with zipfile.ZipFile(path) as source:
        entries = [(info.filename, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for name, content in entries:
            target.writestr(name, content)


def _first_weight(state: dict) -> str:
    return next(iter(state["task"]["G"]))


def _first_group(state: dict) -> dict:
    return state["task"]["opt_g"]["param_groups"][0]


def _nested_too_deep(path: Path) -> None:
    """class_names[0] a list nested 3,000 deep: the unpickler builds it without recursing, a
    repr of it recurses past Python's limit."""
    checkpoint = torch.load(path, weights_only=True)
    nested: list = []
    for _ in range(3_000):
        nested = [nested]
    checkpoint["class_names"] = [nested]
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)  # for the pickler, which recurses
    try:
        torch.save(checkpoint, path)
    finally:
        sys.setrecursionlimit(limit)


CHECKPOINT_CASES = {  # name: (how the file is spoiled, what the error must say)
    "random-bytes": (lambda p: p.write_bytes(random.Random(0).randbytes(3000)),
                     "not a torch checkpoint"),
    "text": (lambda p: p.write_text("not a checkpoint\n"), "not a torch checkpoint"),
    "empty": (lambda p: p.write_bytes(b""), "not a torch checkpoint"),
    "zip-not-torch": (lambda p: zipfile.ZipFile(p, "w").writestr("a.txt", "hi"),
                      "not a torch checkpoint"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
                  "not a torch checkpoint"),
    "deflated": (_deflated, "is compressed"),
    "pickle-payload": (lambda p: p.write_bytes(pickle.dumps(Payload())), "not a torch checkpoint"),
    "torch-payload": (lambda p: torch.save({"step": Payload()}, p), "refused: it holds"),
    "not-a-dict": (lambda p: torch.save([1, 2], p), "expected a dict"),
    "no-keys": (lambda p: torch.save({}, p), "missing format, step, model"),
    "missing-model_config": (_tampered(lambda c: c.pop("model_config")), "missing model_config"),
    "model-not-a-string": (_tampered(lambda c: c.update(model=5)),
                           "model must be a string without control characters, got 5"),
    "unknown-model": (_tampered(lambda c: c.update(model="stylegan")),
                      "model: unknown model 'stylegan'"),
    "other-model-than-config": (_tampered(lambda c: c.update(model="sngan")),
                                "config.model is 'dcgan', model is 'sngan'"),
    "huge-width": (_tampered(lambda c: c["model_config"].update(width=100_000)),
                   "model_config.width must be an integer in [1, 1_024], got 100000"),
    "class_names-not-a-list": (_tampered(lambda c: c.update(class_names=3)),
                               "class_names must be a list of strings"),
    "config-size-string": (_tampered(lambda c: c["config"].update(size="x")),
                           "config.size must be an integer in [1, 1_024], got 'x'"),
    "step-negative": (_tampered(lambda c: c.update(step=-1)),
                      "step must be an integer in [0, 1_000_000_000], got -1"),
    "bad-rng": (_tampered(lambda c: c["rng"].update(python=[3, [1, 2], None])),
                "rng: not the RNG states sketchgen saves"),
    "sizes-in-range-but-huge-together": (
        _tampered(lambda c: (c["model_config"].update(width=1024), c["config"].update(size=1024))),
        "model 'dcgan' at 1024 px would have 366_"),
    "weight-wrong-shape": (_tampered(lambda c: c["task"]["G"].update(
        {_first_weight(c): torch.zeros(3)})), "has shape (3,), the model's is"),
    "weight-missing": (_tampered(lambda c: c["task"]["G"].pop(_first_weight(c))), "missing"),
    # a 1-element storage viewed as 10**10 elements: numpy's copy of it would take 37 GiB
    "huge-view": (_tampered(lambda c: c["rng"]["numpy"].__setitem__(
        1, torch.zeros(1, dtype=torch.int64).expand(10**10))),
        "rng.numpy[1] declares 10_000_000_000 elements (80_000_000_000 bytes), more than"),
    "class-name-huge": (_tampered(lambda c: c.update(class_names=["e" * 10**6, "mouth"])),
                        "class_names[0] must be at most 4_096 characters, got 1_000_000"),
    "class-name-nested-deep": (_nested_too_deep, "class_names[0] must be a string"),
    "optimizer-state-of-no-parameter": (
        _tampered(lambda c: c["task"]["opt_g"]["state"].update({999: {"exp_avg": torch.ones(3)}})),
        "task: opt_g holds state for 999, which is none of its parameters"),
    "optimizer-lr-huge": (_tampered(lambda c: _first_group(c).update(lr=1e300)),
                          "task: opt_g param_groups[0].lr must be a number in (0, 1], got 1e+300"),
    "optimizer-setting-changed": (_tampered(lambda c: _first_group(c).update(maximize=True)),
                                  "task: opt_g param_groups[0].maximize is True, the model's "
                                  "settings give False"),
}
BUILT_FIRST = {  # sizes in range: built, then compared
    "weight-wrong-shape", "weight-missing", "optimizer-state-of-no-parameter",
    "optimizer-lr-huge", "optimizer-setting-changed"}


def spoiled(trained_run: Path, tmp_path: Path, case: str) -> Path:
    run = tmp_path / case
    shutil.copytree(trained_run, run)
    Payload.marker = str(tmp_path / "code-ran")
    CHECKPOINT_CASES[case][0](run / CHECKPOINT)
    return run


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_bad_checkpoint_is_one_line_naming_file_and_key(trained_run, tmp_path, capsys,
                                                        monkeypatch, case):
    run = spoiled(trained_run, tmp_path, case)
    path, message = run / CHECKPOINT, CHECKPOINT_CASES[case][1]
    if case not in BUILT_FIRST:
        def never(*args):
            raise AssertionError("a module was built from an unchecked checkpoint")
        monkeypatch.setattr(registry.ModelEntry, "build", never)
    with pytest.raises(CheckpointError) as caught:
        load_run(run)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)

    error = one_line_error(capsys, ["sample", str(run), "--n", "2", "-o", str(tmp_path / "s.npy")])
    assert error.startswith(f"sketchgen sample: error: {path}: ") and message in error
    error = one_line_error(capsys, ["train", "dcgan", *TINY, "--steps", "3", "--out", str(run),
                                    "--resume"])
    assert error.startswith(f"sketchgen train: error: {path}: ") and message in error
    assert not (tmp_path / "code-ran").exists()
    assert not (tmp_path / "s.npy").exists()


def test_read_checkpoint_accepts_what_training_wrote(trained_run):
    checkpoint = read_checkpoint(trained_run / CHECKPOINT)
    assert checkpoint["step"] == 2 and checkpoint["model"] == "dcgan"


def test_optimizer_settings_a_newer_torch_added_are_filled_in(trained_run, tmp_path, capsys):
    """A checkpoint written by an older torch lacks the optimizer settings added since (e.g.
    Adam's fused, decoupled_weight_decay); torch fills in their defaults, so it still loads and
    resumes."""
    run = tmp_path / "older-torch"
    shutil.copytree(trained_run, run)

    def older(checkpoint):
        for name in ("opt_g", "opt_d"):
            for group in checkpoint["task"][name]["param_groups"]:
                group.pop("fused")
                group.pop("decoupled_weight_decay", None)
    _tampered(older)(run / CHECKPOINT)
    assert load_run(run).step == 2
    assert cli.main(["train", "dcgan", *TINY, "--steps", "3", "--out", str(run),
                     "--resume"]) == 0, capsys.readouterr().err


def test_resuming_with_fewer_steps_than_the_checkpoint_took_is_refused(trained_run, tmp_path,
                                                                       capsys):
    """The loop would take no step and report a run of 1 step done; the checkpoint is of 2."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = (run / CHECKPOINT).read_bytes()
    error = one_line_error(capsys, ["train", "dcgan", *TINY, "--steps", "1", "--out", str(run),
                                    "--resume"])
    assert error.endswith(f"cannot resume: {run / CHECKPOINT} is at step 2, past steps = 1")
    assert (run / CHECKPOINT).read_bytes() == before


def test_compare_load_entry_with_a_bad_checkpoint_is_one_line(trained_run, tmp_path):
    runs = tmp_path / "runs"  # an unconditional model: one run per category
    spoiled(trained_run, tmp_path, "huge-width").rename(runs.mkdir() or runs / "eye")
    shutil.copytree(trained_run, runs / "mouth")
    config = compare.config_from_dict({
        "name": "tiny", "categories": ["eye", "mouth"], "per_class": 20, "n_samples": 10,
        "calibration": False, "out": str(tmp_path / "report"),
        "models": [{"model": "dcgan", "steps": 2, "batch_size": 4, "load": str(runs)}]})
    with pytest.raises(CheckpointError, match="model_config.width must be an integer"):
        plan_runs(config)


def _saved_classifier(path: Path, change=None) -> Path:
    config = ClassifierConfig(width=2)
    write_classifier(Classifier(build_model(config, 2), config, ["eye", "mouth"]), path)
    if change is not None:
        _tampered(change)(path)
    return path


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c["settings"].update(width=100_000),
     "settings.width must be an integer in [1, 1_024], got 100000"),
    (lambda c: c.pop("class_names"), "missing class_names"),
    (lambda c: c.update(best_epoch="x"), "best_epoch must be an integer"),
    (lambda c: c["state_dict"].update({"logits.weight": torch.zeros(5, 5)}),
     "state_dict.logits.weight has shape (5, 5), the model's is (2, 16)"),
])
def test_bad_classifier_checkpoint_is_one_line(tmp_path, monkeypatch, change, message):
    path = _saved_classifier(tmp_path / "classifier.pt", change)
    with pytest.raises(CheckpointError) as caught:
        load_classifier(path, "cpu")
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)


def test_garbage_classifier_file_is_one_line(tmp_path):
    path = tmp_path / "classifier.pt"
    path.write_bytes(b"\x80\x04garbage")
    with pytest.raises(CheckpointError, match="not a torch checkpoint"):
        load_classifier(path, "cpu")
    assert load_classifier(_saved_classifier(tmp_path / "good.pt"), "cpu").class_names == [
        "eye", "mouth"]


# -- environment failures: one line, exit status 1 -----------------------------------------------


def test_tampered_cache_is_one_line_with_status_1(server, tmp_path, capsys):
    cached = resolve("eye", mirror=server.url, options=DownloadOptions(progress=False))
    content = bytearray(cached.read_bytes())
    content[100] ^= 0x01
    cached.write_bytes(bytes(content))
    error = one_line_error(capsys, ["train", "dcgan", *TINY, "--categories", "eye",
                                    "--mirror", server.url, "--out", str(tmp_path / "run")],
                           status=1)
    assert error.startswith("sketchgen train: error: ") and "does not match" in error


def test_full_disk_keeps_the_checkpoint_error_and_notes_the_gif_error(tmp_path, capsys,
                                                                      monkeypatch):
    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(runtime, "save_checkpoint", lambda state, path: full(path))
    monkeypatch.setattr("sketchgen.training.harness.save_gif",
                        lambda frames, path, **kw: full(path))
    config = TrainConfig(model="dcgan", categories=("eye", "mouth"), per_class=20, steps=2,
                         batch_size=4, out=str(tmp_path / "run"), device="cpu", progress=False,
                         model_options={"width": 8})
    with pytest.raises(OSError) as caught:
        train(config)
    assert caught.value.filename.endswith(CHECKPOINT)
    assert any(GIF in note for note in getattr(caught.value, "__notes__", []))

    assert cli.main(["train", "dcgan", *TINY, "--steps", "2",
                     "--out", str(tmp_path / "again")]) == 1
    error = capsys.readouterr().err
    lines = error.splitlines()
    assert "Traceback" not in error and len(lines) == 2, error
    assert lines[0].startswith("sketchgen train: error: [Errno 28]") and CHECKPOINT in lines[0]
    assert lines[1].startswith("sketchgen train: note: ") and GIF in lines[1]


def test_unexpected_errors_stay_tracebacks(monkeypatch, tmp_path):
    """A bug is not an expected error: the CLI must not hide it."""
    monkeypatch.setattr("sketchgen.training.harness.train", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        cli.main(["train", "dcgan", *TINY, "--out", str(tmp_path / "run")])


@pytest.mark.parametrize("argv, message", [
    (["--n", "100000000", "-o", "x.npy"], "n must be an integer in [1, 1_000_000], got 100000000"),
    (["--n", "0", "-o", "x.npy"], "n must be an integer in [1, 1_000_000], got 0"),
    (["--n", "4", "-o", "a\0b.npy"], "out must be a path without NUL or control characters"),
    (["--n", "4", "-o", "x.jpg"], "out must end in .npy or .png, got 'x.jpg'"),
])
def test_bad_sample_requests_are_one_line_before_the_run_is_read(argv, message, tmp_path,
                                                                 capsys):
    # the run folder does not even exist: the request is refused before it is looked at
    assert cli.main(["sample", str(tmp_path / "no-run"), *argv]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error
