"""The notebook API (sketchgen.api, re-exported as ``sketchgen``): the README's five lines at a
small scale, the run-folder rules of ``fit``, stroke models, and the default evaluator."""

from __future__ import annotations

import dataclasses
import gc
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import imported_by

import sketchgen as sg
from rasterize.drawings import Drawing
from rasterize.render import render as render_drawings
from sketchgen.data.datasets import LabelledBitmaps
from sketchgen.errors import ConfigError

GAN = dict(batch_size=16, device="cpu", progress=False, width=8)  # seconds on one core
SKETCH_RNN = dict(batch_size=8, device="cpu", progress=False, enc_rnn_size=16, dec_rnn_size=32,
                  z_size=8, class_embedding_size=8, num_mixture=3, eval_every=0)
SMALL = sg.EvaluatorConfig(categories=("eye", "mouth", "face"), per_class=40)  # ~1 s


@pytest.fixture(scope="module")
def eyes():
    """400 real eye drawings: 200 to train on and compare with, 200 held out."""
    return sg.load("eye", per_class=400)


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory):
    """A cache folder holding the SMALL evaluator."""
    folder = tmp_path_factory.mktemp("small-evaluator")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SKETCHGEN_CACHE", str(folder))
        sg.evaluator(SMALL)
    return folder


@pytest.fixture(scope="module")
def small_evaluator(small_cache):
    """For tests of anything but the default evaluator, which only the five lines build."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SKETCHGEN_CACHE", str(small_cache))
        return sg.evaluator(SMALL)


def test_import_stays_torch_free():
    assert imported_by("import sketchgen; dir(sketchgen)", ("torch", "sketchgen.api")) == []


def test_no_api_name_is_shadowed_by_a_submodule():
    import pkgutil

    import sketchgen.training.harness  # noqa: F401  (sets the attribute "train" on the package)

    submodules = {module.name for module in pkgutil.iter_modules(sg.__path__)}
    assert not submodules & set(sg.__all__)
    assert callable(sg.fit) and sg.load is sg.api.load


def test_the_five_lines_and_the_default_evaluator(eyes, monkeypatch):
    """load -> render -> fit -> sample -> fid, numpy in and out. An untrained-for-long GAN
    draws nothing like an eye: its FID must be far above the floor of two real halves. The
    first fid builds the default evaluator (the only test that does: 25 s on one core)."""
    assert len(eyes) == 400 and list(eyes.class_names) == ["eye"]
    images = sg.render(eyes, size=28)
    assert images.dtype == np.uint8 and images.shape == (400, 28, 28)
    assert np.array_equal(images, render_drawings(eyes.drawings))  # Google's geometry
    model = sg.fit("dcgan", eyes, steps=20, **GAN)
    assert (model.step, model.class_names, model.kind, model.size) == (20, ("eye",), "bitmap",
                                                                       28)
    fake = model.sample(200, seed=1)
    assert fake.dtype == np.uint8 and fake.shape == (200, 28, 28)
    assert np.array_equal(fake, model.sample(200, seed=1))
    assert not np.array_equal(fake, model.sample(200, seed=2))
    assert list(model.sample_classes(3)) == ["eye"] * 3
    floor = sg.fid(images[:200], images[200:])
    assert floor < 0.1 * sg.fid(images[:200], fake)
    noise = np.random.default_rng(0).integers(0, 256, (200, 28, 28), dtype=np.uint8)
    assert floor < 0.1 * sg.fid(images[:200], noise)
    scores = sg.scores(images[:200], images[200:])
    assert scores["fid"] == pytest.approx(floor)
    assert set(scores) == {"fid", "kid", "precision", "recall"}
    assert sg.kid(images[:200], fake).mean > 10 * abs(sg.kid(images[:200], images[200:]).mean)
    # The suite's .npy rows (N, size*size) and drawings are taken too, scored alike.
    assert sg.fid(images[:200].reshape(200, -1), eyes.drawings[200:]) == pytest.approx(floor)
    # FID in steps, as pytorch-fid composes it: the real set's statistics once, then distances.
    real = sg.feature_statistics(sg.features(images[:200]))
    assert sg.frechet_distance(*real, *sg.feature_statistics(sg.features(fake))) == (
        pytest.approx(sg.fid(images[:200], fake)))

    identity = sg.evaluator().identity
    assert identity["feature_space"] == "qd-cnn-k16/dense"
    assert identity["config"] == sg.EvaluatorConfig().to_dict()
    assert len(identity["config"]["categories"]) == 26 and identity["config"]["per_class"] == 250
    assert identity["test_accuracy"] > 0.4  # 26 classes: chance is 0.04
    assert identity["built_with"]["threads"] == 1 and identity["built_with"]["device"] == "cpu"
    from sketchgen.evaluation import evaluator

    def no_training(*args, **kwargs):
        raise AssertionError("the cached evaluator was trained again")

    monkeypatch.setattr(evaluator, "fit_and_evaluate", no_training)
    assert sg.evaluator().identity == identity


def test_a_temporary_run_is_removed_on_close_and_on_collection(eyes):
    model = sg.fit("dcgan", eyes, steps=2, **GAN)
    folder = model.run_dir
    assert (folder / "checkpoint.pt").is_file() and (folder / "learning.gif").is_file()
    before = model.sample(8, seed=3)
    model.close()
    assert not folder.exists() and model.run_dir is None
    assert np.array_equal(model.sample(8, seed=3), before)  # the model itself is in memory
    other = sg.fit("dcgan", eyes, steps=2, **GAN)
    folder = other.run_dir
    del other
    gc.collect()
    assert not folder.exists()


LEFT_OPEN = """
import sketchgen as sg
eyes = sg.load("eye", per_class=16)
model = sg.fit("dcgan", eyes, steps=1, batch_size=8, device="cpu", progress=False, width=4)
print(model.run_dir)
"""


def test_a_temporary_run_left_open_is_removed_quietly_at_exit():
    ran = subprocess.run([sys.executable, "-c", LEFT_OPEN], capture_output=True, text=True)
    assert ran.returncode == 0 and ran.stderr == "", ran.stderr[-2000:]
    folder = Path(ran.stdout.strip())
    assert folder.name.startswith("sketchgen-run-") and not folder.exists()


def test_fit_with_out_returns_the_finished_run_and_resumes_an_unfinished_one(eyes, tmp_path):
    out = tmp_path / "run"
    first = sg.fit("dcgan", eyes, steps=10, out=out, **GAN)
    assert first.step == 10
    checkpoint = (out / "checkpoint.pt").stat().st_mtime_ns
    again = sg.fit("dcgan", eyes, steps=10, out=out, **GAN)  # the cell run a second time
    assert again.step == 10 and (out / "checkpoint.pt").stat().st_mtime_ns == checkpoint
    assert np.array_equal(again.sample(50, seed=4), first.sample(50, seed=4))
    longer = sg.fit("dcgan", eyes, steps=20, out=out, **GAN)  # as after an interruption
    straight = sg.fit("dcgan", eyes, steps=20, out=tmp_path / "straight", **GAN)
    assert longer.step == 20
    assert np.array_equal(longer.sample(50, seed=4), straight.sample(50, seed=4))
    reopened = sg.Model.open(out)
    assert np.array_equal(reopened.sample(50, seed=4), longer.sample(50, seed=4))
    assert json.loads(json.dumps(reopened.class_names)) == ["eye"]


def _refusal(call) -> str:
    with pytest.raises(ConfigError) as caught:
        call()
    message = str(caught.value)
    assert "--" not in message, message  # library errors speak of parameters, not flags
    return message


def test_other_settings_or_data_on_an_existing_run_are_refused_by_name(eyes, tmp_path):
    out = tmp_path / "run"
    sg.fit("dcgan", eyes, steps=4, out=out, **GAN)
    checkpoint = (out / "checkpoint.pt").read_bytes()
    assert "batch_size" in _refusal(lambda: sg.fit("dcgan", eyes, steps=4, out=out,
                                                   **(GAN | {"batch_size": 8})))
    assert "model_options" in _refusal(lambda: sg.fit("dcgan", eyes, steps=4, out=out,
                                                      **(GAN | {"width": 16})))
    fewer = sg.load("eye", per_class=300)
    assert "data" in _refusal(lambda: sg.fit("dcgan", fewer, steps=4, out=out, **GAN))
    assert "steps=2" in _refusal(lambda: sg.fit("dcgan", eyes, steps=2, out=out, **GAN))
    assert "resume=True" in _refusal(lambda: sg.fit("dcgan", eyes, steps=4, out=out,
                                                    resume=False, **GAN))
    assert (out / "checkpoint.pt").read_bytes() == checkpoint  # nothing was touched
    message = _refusal(lambda: sg.fit("dcgan", eyes, steps=4, colour=1, **GAN))
    assert "colour" in message and "batch_size" in message and "width" in message
    assert "per_class" in _refusal(lambda: sg.fit("dcgan", eyes, per_class=10, **GAN))
    model = sg.Model.open(out)
    assert "category" in _refusal(lambda: model.sample(4, category="eye"))
    for seed in (1.5, -1, 2**64, True):
        with pytest.raises(ValueError, match=r"^seed must be an integer in \[0, "):
            model.sample(4, seed=seed)


def test_the_harness_records_data_given_in_memory_and_resumes_only_on_it(eyes, tmp_path):
    import torch

    from sketchgen.data.datasets import load_bitmaps
    from sketchgen.training.config import TrainConfig, load_toml
    from sketchgen.training.harness import train
    from sketchgen.training.inputs import load_data

    config = TrainConfig(model="dcgan", steps=2, batch_size=16, out=str(tmp_path / "run"),
                         device="cpu", progress=False, model_options={"width": 8})
    train(config, data=eyes)
    assert load_toml(tmp_path / "run" / "config.toml").categories == ("eye",)
    fewer = sg.load("eye", per_class=300)
    longer = dataclasses.replace(config, steps=4)
    with pytest.raises(ConfigError, match="trained on 400 drawings given as data"):
        train(longer, resume=True, data=fewer)
    with pytest.raises(ConfigError, match="not on the config's categories"):
        train(dataclasses.replace(longer, categories=("eye",)), resume=True)  # as the CLI
    assert train(longer, resume=True, data=eyes).step == 4
    # Drawings given to a bitmap model become exactly the bitmaps the data module renders.
    given, _ = load_data(config, "bitmap", torch.device("cpu"), eyes)
    assert np.array_equal(given.images.numpy(), load_bitmaps("eye", 28, per_class=400).bitmaps)


def test_bitmaps_train_bitmap_models_only(eyes):
    images = sg.render(eyes.drawings[:64])
    bitmaps = LabelledBitmaps(images, eyes.labels[:64], eyes.class_names)
    with sg.fit("dcgan", bitmaps, steps=2, **GAN) as model:
        assert model.sample(4).shape == (4, 28, 28)
    assert "drawings" in _refusal(lambda: sg.fit("sketch-rnn", bitmaps, steps=2, **SKETCH_RNN))


def test_a_stroke_model_returns_strokes_and_their_bitmaps(tmp_path):
    faces = sg.load(["face", "cat"], per_class=25)
    model = sg.fit("sketch-rnn", faces, steps=3, out=tmp_path / "srnn", **SKETCH_RNN)
    drawings = model.sample_drawings(6, seed=5)
    assert len(drawings) == 6 and all(isinstance(d, Drawing) for d in drawings)
    images = model.sample(6, seed=5)
    assert images.shape == (6, 28, 28) and np.array_equal(images, sg.render(drawings))
    assert [d.strokes[0].tolist() for d in model.sample_drawings(6, seed=5)] == [
        d.strokes[0].tolist() for d in drawings]
    assert list(model.sample_classes(4)) == ["face", "cat", "face", "cat"]
    gan = sg.fit("dcgan", faces, steps=1, **GAN)
    with pytest.raises(ValueError, match="sample\\(\\)"):
        gan.sample_drawings(2)


def test_an_evaluator_is_the_same_network_for_the_same_config(small_evaluator, tmp_path,
                                                              monkeypatch):
    """Two cache folders (two users) build the same weights, on one torch thread, leaving the
    caller's thread count as it was."""
    import torch

    monkeypatch.setenv("SKETCHGEN_CACHE", str(tmp_path))
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        again = sg.evaluator(SMALL).identity
        assert torch.get_num_threads() == threads + 1
    finally:
        torch.set_num_threads(threads)
    assert again == small_evaluator.identity
    other_seed = sg.evaluator(dataclasses.replace(SMALL, seed=1)).identity
    assert other_seed["weights_sha256"] != again["weights_sha256"]
    with pytest.raises(ValueError, match="fewer"):
        sg.evaluator(sg.EvaluatorConfig(("eye", "bear"), per_class=300))


@pytest.mark.parametrize(("settings", "message"), [
    ({"categories": "eye"}, "categories must be a list of strings"),  # not ("e", "y", "e")
    ({"categories": ["eye"]}, "categories must name at least two"),
    ({"per_class": 0}, "per_class must be an integer in"),
    ({"per_class": 2.5}, "per_class must be an integer"),
    ({"seed": -1}, "seed must be an integer in"),
])
def test_an_evaluator_config_is_checked_when_made(settings, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        sg.EvaluatorConfig(**settings)


def test_inputs_that_do_not_fit_name_the_parameter(small_evaluator):
    def fid(real, fake):
        return sg.fid(real, fake, evaluator=small_evaluator)

    with pytest.raises(ValueError, match="^fake: .*expected"):
        fid(np.zeros((10, 28, 28), np.uint8), np.zeros((10, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="^real: .*uint8"):
        fid(np.zeros((10, 28, 28), np.float32), np.zeros((10, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="^real: .*at least 2"):
        fid(np.zeros((1, 28, 28), np.uint8), np.zeros((10, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="^fake: .*no images"):
        fid(np.zeros((10, 28, 28), np.uint8), np.zeros((0, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="^images: .*no images"):
        sg.features([], evaluator=small_evaluator)
    with pytest.raises(TypeError, match="^drawings:"):
        sg.render("eye")


def test_a_damaged_checkpoint_in_out_is_one_line_naming_it(eyes, tmp_path):
    import torch

    out = tmp_path / "run"
    out.mkdir()
    torch.save({"format": 1, "step": 3}, out / "checkpoint.pt")
    message = _refusal(lambda: sg.fit("dcgan", eyes, steps=4, out=out, **GAN))
    assert str(out / "checkpoint.pt") in message and "missing" in message


def test_a_stranger_data_record_in_a_checkpoint_is_refused_in_one_line(eyes, tmp_path):
    from sketchgen import runtime

    out = tmp_path / "run"
    sg.fit("dcgan", eyes, steps=1, out=out, **GAN)
    checkpoint = runtime.load_checkpoint(out / "checkpoint.pt")
    runtime.save_checkpoint(checkpoint | {"data": {"kind": "bitmaps"}}, out / "checkpoint.pt")
    assert "trained on other data" in _refusal(lambda: sg.fit("dcgan", eyes, steps=2, out=out,
                                                              **GAN))


def test_a_cached_evaluator_that_does_not_match_its_record_is_refused(small_cache, tmp_path,
                                                                      monkeypatch):
    import shutil

    from sketchgen.evaluation.evaluator import load_classifier, save_classifier

    shutil.copytree(small_cache, tmp_path, dirs_exist_ok=True)
    monkeypatch.setenv("SKETCHGEN_CACHE", str(tmp_path))
    record = next((tmp_path / "evaluators").glob("*.json"))
    network = record.with_suffix(".pt")
    kept = record.read_text()
    for damage in ("{", "[]", json.dumps(json.loads(kept) | {"weights_sha256": "0" * 64})):
        record.write_text(damage)
        with pytest.raises(ValueError, match="delete both"):
            sg.evaluator(SMALL)
    # The same weights told to draw thinner lines would judge other bitmaps than it learnt.
    record.write_text(kept)
    thinner = load_classifier(network, "cpu")
    thinner.config = dataclasses.replace(thinner.config, line_width=8.0)
    save_classifier(thinner, network)
    with pytest.raises(ValueError, match="delete both"):
        sg.evaluator(SMALL)


def test_two_callers_asking_for_a_new_evaluator_train_it_once(tmp_path, monkeypatch):
    """The second waits for the first's lock on the cache entry (an flock: separate opens
    exclude each other in one process as across processes), then reads what it cached."""
    import threading
    import time

    from sketchgen.evaluation import evaluator

    monkeypatch.setenv("SKETCHGEN_CACHE", str(tmp_path))
    trainings, identities = [], []
    fit_and_evaluate = evaluator.fit_and_evaluate

    def slowly(*args, **kwargs):
        trainings.append(1)
        time.sleep(0.5)  # long enough for the other caller to find no cache, without the lock
        return fit_and_evaluate(*args, **kwargs)

    monkeypatch.setattr(evaluator, "fit_and_evaluate", slowly)
    start = threading.Barrier(2)

    def ask() -> None:
        start.wait()
        identities.append(sg.evaluator(SMALL).identity["weights_sha256"])

    callers = [threading.Thread(target=ask) for _ in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(trainings) == 1 and len(identities) == 2 and len(set(identities)) == 1
