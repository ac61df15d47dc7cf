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

import sketchgen as sg
from rasterize.drawings import Drawing
from rasterize.render import render as render_drawings
from sketchgen.config import ConfigError
from sketchgen.data import LabelledBitmaps

GAN = dict(batch_size=16, device="cpu", progress=False, width=8)  # seconds on one core
SKETCH_RNN = dict(batch_size=8, device="cpu", progress=False, enc_rnn_size=16, dec_rnn_size=32,
                  z_size=8, class_embedding_size=8, num_mixture=3, eval_every=0)
SMALL = sg.EvaluatorConfig(categories=("eye", "mouth", "face"), per_class=40)  # ~1 s


@pytest.fixture(scope="module")
def eyes():
    """400 real eye drawings: 200 to train on and compare with, 200 held out."""
    return sg.load("eye", per_class=400)


@pytest.fixture(scope="module")
def default_evaluator(tmp_path_factory):
    """The default evaluator, built once into the cache folder every test of the session uses
    (the path conftest's isolated_cache sets; it is not set yet for a module fixture)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SKETCHGEN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        return sg.evaluator()


@pytest.fixture(scope="module")
def small_evaluator(tmp_path_factory):
    """An evaluator of 3 x 40 drawings (about a second): for tests of anything but the
    default evaluator itself."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SKETCHGEN_CACHE", str(tmp_path_factory.mktemp("small-evaluator")))
        return sg.evaluator(SMALL)


def test_import_stays_torch_free():
    code = ("import sys, sketchgen; dir(sketchgen); "
            "print('torch' in sys.modules, 'sketchgen.api' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True)
    assert shown.stdout.split() == ["False", "False"]


def test_no_api_name_is_shadowed_by_a_submodule():
    import pkgutil

    import sketchgen.train  # noqa: F401  (sets the attribute "train" on the package)

    submodules = {module.name for module in pkgutil.iter_modules(sg.__path__)}
    assert not submodules & set(sg.__all__)
    assert callable(sg.fit) and sg.load is sg.api.load


def test_the_five_lines(eyes, default_evaluator, tmp_path):
    """load -> render -> fit -> sample -> fid, numpy in and out. An untrained-for-long GAN
    draws nothing like an eye: its FID must be far above the floor of two real halves."""
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

    from sketchgen.config import TrainConfig, load_toml
    from sketchgen.data import load_bitmaps
    from sketchgen.train import load_data, train

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


def test_the_default_evaluator_is_cached_and_identified(default_evaluator, monkeypatch):
    identity = default_evaluator.identity
    assert identity["feature_space"] == "qd-cnn-k16/dense"
    assert identity["config"] == sg.EvaluatorConfig().to_dict()
    assert len(identity["config"]["categories"]) == 26 and identity["config"]["per_class"] == 250
    assert identity["test_accuracy"] > 0.4  # 26 classes: chance is 0.04
    assert identity["built_with"]["threads"] == 1 and identity["built_with"]["device"] == "cpu"
    from sketchgen import classifier

    def no_training(*args, **kwargs):
        raise AssertionError("the cached evaluator was trained again")

    monkeypatch.setattr(classifier, "fit_and_evaluate", no_training)
    assert sg.evaluator().identity == identity


def test_an_evaluator_is_the_same_network_for_the_same_config(tmp_path, monkeypatch):
    """Two cache folders (two users) build the same weights; the record guards the file."""
    small = sg.EvaluatorConfig(categories=("eye", "mouth", "face"), per_class=40)
    built = []
    for user in ("a", "b"):
        monkeypatch.setenv("SKETCHGEN_CACHE", str(tmp_path / user))
        built.append(sg.evaluator(small).identity)
    assert built[0] == built[1]
    record = next((tmp_path / "b" / "evaluators").glob("*.json"))
    other_seed = sg.evaluator(sg.EvaluatorConfig(small.categories, 40, seed=1)).identity
    assert other_seed["weights_sha256"] != built[0]["weights_sha256"]
    record.write_text(json.dumps(built[0] | {"weights_sha256": "0" * 64}))
    with pytest.raises(ValueError, match="delete both"):
        sg.evaluator(small)
    with pytest.raises(ValueError, match="fewer"):
        sg.evaluator(sg.EvaluatorConfig(("eye", "bear"), per_class=300))


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


def test_a_cached_evaluator_that_does_not_match_its_record_is_refused(tmp_path, monkeypatch):
    from sketchgen.classifier import load_classifier, save_classifier

    monkeypatch.setenv("SKETCHGEN_CACHE", str(tmp_path))
    sg.evaluator(SMALL)
    record = next((tmp_path / "evaluators").glob("*.json"))
    network = record.with_suffix(".pt")
    kept = record.read_text()
    for damage in ("{", "[]"):
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


RACE = """
import pathlib, sys, time
import sketchgen as sg
from sketchgen import classifier
import sketchgen.api  # everything imported before the race starts

trained = classifier.fit_and_evaluate
def slowly(*args, **kwargs):
    print("trained", flush=True)
    time.sleep(1)
    return trained(*args, **kwargs)

classifier.fit_and_evaluate = slowly
ready = pathlib.Path(sys.argv[1])
(ready / sys.argv[2]).touch()
while len(list(ready.iterdir())) < 2:
    time.sleep(0.01)
config = sg.EvaluatorConfig(categories=("eye", "mouth", "face"), per_class=40)
print(sg.evaluator(config).identity["weights_sha256"])
"""


def test_two_processes_asking_for_a_new_evaluator_train_it_once(tmp_path, monkeypatch):
    """The second waits for the first's lock, then reads what it cached."""
    monkeypatch.setenv("SKETCHGEN_CACHE", str(tmp_path / "cache"))
    (tmp_path / "ready").mkdir()
    racers = [subprocess.Popen([sys.executable, "-c", RACE, str(tmp_path / "ready"), name],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for name in ("a", "b")]
    shown = [racer.communicate() for racer in racers]
    assert all(racer.returncode == 0 for racer in racers), [err[-2000:] for _, err in shown]
    lines = [out.split() for out, _ in shown]
    assert sorted(len(printed) for printed in lines) == [1, 2]  # one trained, one did not
    assert len({printed[-1] for printed in lines}) == 1  # and both have the same network
