"""Where the suite writes (issue 10, items 2-4): safe names, owned folders, locks, checked
deletes -- the module's rules, then `sketchgen train`, `sample` and `compare` on folders
holding a user's files, on paths from configs, and with two processes on one folder.

Longer than 450 lines: the rules and the three commands that follow them share the fixtures
that build users' folders, trained runs and a finished comparison (``trained``, ``compared``)."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_compare import tiny_config, write_toml
from test_train import CATEGORIES, small

from sketchgen import cli, errors, outputs
from sketchgen.comparison.config import WORK, config_from_dict
from sketchgen.comparison.run import run_comparison
from sketchgen.errors import ConfigError, UsageError
from sketchgen.figures import read_jsonl
from sketchgen.training import harness as training
from sketchgen.training import sampling
from sketchgen.training.config import TrainConfig, dump_toml
from sketchgen.training.harness import train
from sketchgen.training.run_folder import CHECKPOINT, CONFIG

TRAIN = ["sngan", "--categories", *CATEGORIES, "--per-class", "40", "--batch-size", "8",
         "--set", "width=8", "--device", "cpu", "--no-progress"]

def snapshot(root) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for folders)."""
    return {path.relative_to(root).as_posix(): path.read_bytes() if path.is_file() else None
            for path in sorted(root.rglob("*"))}


def users_folder(path, files: dict[str, str]):
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    return path


def one_line_error(capsys) -> str:
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    return error


def hold_lock(folder, kind: str = "run") -> subprocess.Popen:
    """Another process holding ``folder``'s lock until its stdin closes."""
    code = ("import sys; from sketchgen import outputs\n"
            f"claim = outputs.claim({str(folder)!r}, {kind!r}, overwrite=True)\n"
            "print('locked', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "locked\n"
    return holder


def release(holder: subprocess.Popen) -> None:
    holder.stdin.close()
    assert holder.wait(timeout=30) == 0


# -- names --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dcgan", "sngan 2", "v1.5-b+c_d", "The Eiffel Tower", "café",
                                  "x" * outputs.NAME_MAX])
def test_plain_names_are_accepted(name):
    assert outputs.check_name(name, "models[0].label") == name


@pytest.mark.parametrize("name", ["/tmp/x/victim", "../../../victim", "../../escape", "a/b",
                                  "a\\b", "..", ".", "", ".hidden", "a..b", "a\x00b", "tab\t",
                                  "-flag", "x" * (outputs.NAME_MAX + 1), 3])
def test_names_that_could_leave_a_folder_are_refused_naming_the_field(name):
    with pytest.raises(ConfigError, match=r"^models\[2\]\.label: .* cannot name a file"):
        outputs.check_name(name, "models[2].label")


# -- claiming folders -----------------------------------------------------------------------


def test_a_new_or_empty_folder_is_claimed_and_marked(tmp_path):
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "new" / "deeper", tmp_path / "empty"):
        with outputs.claim(folder, "run") as claimed:
            assert claimed.owned and (folder / outputs.LOCK).is_file()
        assert outputs.is_owned(folder, "run") and not outputs.is_owned(folder, "report")
        assert sorted(os.listdir(folder)) == [outputs.MARKER]  # the lock goes with the claim
        with outputs.claim(folder, "run") as again:  # its own folder: taken again
            assert again.owned


def test_a_users_folder_is_refused_and_left_as_it_was(tmp_path):
    folder = users_folder(tmp_path / "mine", {"notes.txt": "mine", "a/b.png": "x"})
    before = snapshot(tmp_path)
    with pytest.raises(errors.OutputError) as refused:
        outputs.claim(folder, "run")
    message = str(refused.value)
    assert str(folder) in message and "a, notes.txt" in message
    assert "pass overwrite=True to write into it anyway" in message
    assert "pass --overwrite to" in str(cli.as_flags(refused.value))
    assert snapshot(tmp_path) == before


def test_overwrite_writes_into_a_users_folder_without_taking_it(tmp_path):
    folder = users_folder(tmp_path / "mine", {"notes.txt": "mine"})
    with outputs.claim(folder, "run", overwrite=True) as claimed:
        assert not claimed.owned
    assert not outputs.is_owned(folder, "run")  # the next write needs overwrite again
    with pytest.raises(errors.OutputError):
        outputs.claim(folder, "run")


def test_a_folder_of_another_kind_or_a_file_is_refused(tmp_path):
    with outputs.claim(tmp_path / "report", "report"):
        pass
    with pytest.raises(errors.OutputError, match="not a sketchgen run folder"):
        outputs.claim(tmp_path / "report", "run")
    (tmp_path / "file").write_text("")
    with pytest.raises(errors.OutputError, match="is a file, not a folder"):
        outputs.claim(tmp_path / "file", "run", overwrite=True)


def test_a_recognised_old_folder_is_accepted_but_not_marked(tmp_path):
    folder = users_folder(tmp_path / "old", {"checkpoint.pt": "", "mine.txt": ""})
    with outputs.claim(folder, "run", recognise=lambda f: (f / "checkpoint.pt").exists()) as c:
        assert not c.owned
    assert not (folder / outputs.MARKER).exists()


def test_a_marker_that_is_not_the_suites_does_not_make_a_folder_ours(tmp_path):
    folder = users_folder(tmp_path / "fake", {outputs.MARKER: "[1, 2]", "mine.txt": ""})
    with pytest.raises(errors.OutputError, match="not a sketchgen run folder"):
        outputs.claim(folder, "run")


def test_a_marker_that_links_elsewhere_does_not_make_a_folder_ours(tmp_path):
    """A marker the suite wrote is a file of the folder; a link to another folder's marker
    (say from `cp -rs`) must not make a folder of the user's look like the suite's."""
    with outputs.claim(tmp_path / "report", "report"):
        pass
    folder = users_folder(tmp_path / "mine", {"notes.txt": "mine"})
    (folder / outputs.MARKER).symlink_to(tmp_path / "report" / outputs.MARKER)
    before = snapshot(tmp_path)
    assert not outputs.is_owned(folder, "report")
    with pytest.raises(errors.OutputError, match="not a sketchgen report folder"):
        outputs.claim(folder, "report")
    with pytest.raises(errors.OutputError, match="sketchgen did not create it"):
        outputs.remove_folder(folder, tmp_path, "report")
    assert snapshot(tmp_path) == before


def test_the_folder_is_looked_at_again_once_locked(tmp_path, monkeypatch):
    """Between the first look (empty) and taking the lock, a file of the user's appears:
    the folder must be refused, not marked as the suite's."""
    folder, lock = tmp_path / "new", outputs._lock

    def meanwhile(path):
        users_folder(path, {"mine.txt": "written meanwhile"})
        return lock(path)

    monkeypatch.setattr(outputs, "_lock", meanwhile)
    with pytest.raises(errors.OutputError, match=r"is not empty \(mine.txt\)"):
        outputs.claim(folder, "run")
    assert os.listdir(folder) == ["mine.txt"]


# -- locks ----------------------------------------------------------------------------------


def test_a_second_claim_is_refused_at_once_naming_the_holder(tmp_path):
    with outputs.claim(tmp_path / "run", "run"):
        with pytest.raises(errors.OutputError,
                           match=f"being written by another sketchgen process "
                                 f"\\(pid {os.getpid()}, this one\\)"):
            outputs.claim(tmp_path / "run", "run", overwrite=True)
    with outputs.claim(tmp_path / "run", "run"):  # released: free again
        pass


def test_the_lock_holds_across_processes_and_ends_with_its_holder(tmp_path):
    holder = hold_lock(tmp_path / "run")
    try:
        with pytest.raises(errors.OutputError, match=f"\\(pid {holder.pid}\\)"):
            outputs.claim(tmp_path / "run", "run")
    finally:
        release(holder)
    with outputs.claim(tmp_path / "run", "run"):
        pass


def test_a_lock_file_left_by_a_killed_process_does_not_block(tmp_path):
    with outputs.claim(tmp_path / "run", "run"):
        pass
    (tmp_path / "run" / outputs.LOCK).write_text("12345\n")  # its holder died holding it
    with outputs.claim(tmp_path / "run", "run") as claimed:
        assert claimed.owned


def test_a_lock_file_that_links_elsewhere_is_not_written_through(tmp_path):
    victim = users_folder(tmp_path, {"victim.txt": "mine"}) / "victim.txt"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / outputs.LOCK).symlink_to(victim)
    with pytest.raises(OSError):
        outputs.claim(tmp_path / "run", "run", overwrite=True)
    assert victim.read_text() == "mine"


def test_a_claim_that_fails_while_locking_keeps_no_lock(tmp_path, monkeypatch):
    def full_disk(fd, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs.os, "ftruncate", full_disk)
    with pytest.raises(OSError, match="No space left"):
        outputs.claim(tmp_path / "run", "run")
    monkeypatch.undo()
    with outputs.claim(tmp_path / "run", "run"):
        pass


def test_a_lock_file_removed_by_its_holder_while_opened_is_not_trusted(tmp_path, monkeypatch):
    """The holder removes the lock file, then releases it; a process that opened the file
    just before must not take the lock of that removed file (it would lock nothing that a
    third process sees) but lock the file now in its place."""
    folder, opened = tmp_path / "run", []
    holder = outputs.claim(folder, "run")
    stale = os.open(folder / outputs.LOCK, os.O_RDWR)  # opened just before the release
    holder.release()
    real_open = os.open

    def open_stale_first(path, *args, **kwargs):
        if Path(path).name != outputs.LOCK:
            return real_open(path, *args, **kwargs)
        opened.append(path)
        return stale if len(opened) == 1 else real_open(path, *args, **kwargs)

    monkeypatch.setattr(outputs.os, "open", open_stale_first)
    with outputs.claim(folder, "run") as claimed:
        monkeypatch.undo()
        assert len(opened) == 2  # the stale file, then the new one
        assert os.fstat(claimed._fd).st_ino == os.stat(folder / outputs.LOCK).st_ino
        with pytest.raises(errors.OutputError, match="being written"):
            outputs.claim(folder, "run")


# -- deleting -------------------------------------------------------------------------------


def test_remove_folder_deletes_only_marked_folders_inside_the_working_folder(tmp_path):
    work = tmp_path / "work"
    with outputs.claim(work / "runs" / "a", "run"):
        pass
    users_folder(work / "runs" / "b", {"mine.txt": "mine"})
    with outputs.claim(tmp_path / "outside", "run"):
        pass
    (work / "runs" / "link").symlink_to(tmp_path / "outside")
    before = snapshot(tmp_path)
    for target, why in ((work / "runs" / "b", "sketchgen did not create it"),
                        (tmp_path / "outside", "not inside"),
                        (work / "runs" / "link", "not inside"),
                        (work / "runs" / "a" / ".." / "..", "not inside"),
                        (work, "not inside")):
        with pytest.raises(errors.OutputError, match=f"refusing to delete .*{why}"):
            outputs.remove_folder(target, work, "run")
    assert snapshot(tmp_path) == before
    outputs.remove_folder(work / "runs" / "a", work, "run")
    assert not (work / "runs" / "a").exists()


def test_a_folder_being_written_is_not_deleted(tmp_path):
    holder = hold_lock(tmp_path / "work" / "run")
    try:
        with pytest.raises(errors.OutputError, match="being written by another"):
            outputs.remove_folder(tmp_path / "work" / "run", tmp_path / "work", "run")
        assert outputs.is_owned(tmp_path / "work" / "run", "run")
    finally:
        release(holder)


def test_only_recorded_files_are_removed(tmp_path):
    folder = tmp_path / "report"
    with outputs.claim(folder, "report") as claimed:
        users_folder(folder, {"README.md": "", "grids/a.png": "", "grids/b.png": "",
                              "training/x/losses.png": "", "mine.txt": "", "grids/mine.png": ""})
        claimed.record([folder / "README.md", folder / "grids" / "a.png",
                        folder / "grids" / "b.png", folder / "training" / "x" / "losses.png"])
    with outputs.claim(folder, "report") as claimed:
        claimed.remove_recorded()
    assert sorted(snapshot(folder)) == [outputs.MARKER, "grids", "grids/mine.png", "mine.txt"]


@pytest.mark.parametrize("listed", ["../victim/file", "/elsewhere", "link/file", outputs.LOCK])
def test_a_marker_listing_files_elsewhere_deletes_nothing(tmp_path, listed):
    folder = tmp_path / "report"
    with outputs.claim(folder, "report"):
        pass
    users_folder(tmp_path, {"victim/file": "mine", "report/README.md": ""})
    (folder / "link").symlink_to(tmp_path / "victim")
    (folder / outputs.MARKER).write_text(json.dumps({"kind": "report",
                                                      "written": ["README.md", listed]}))
    before = snapshot(tmp_path)
    with outputs.claim(folder, "report") as claimed, \
            pytest.raises(errors.OutputError, match="which is not a file of this folder"):
        claimed.remove_recorded()
    assert snapshot(tmp_path) == before


def test_existing_output_files_need_overwrite(tmp_path):
    (tmp_path / "x.npy").write_text("mine")
    outputs.check_free([tmp_path / "y.npy"])
    with pytest.raises(errors.OutputError, match="x.npy exists; .*pass overwrite=True to "
                                                  "replace it"):
        outputs.check_free([tmp_path / "y.npy", tmp_path / "x.npy"])
    outputs.check_free([tmp_path / "x.npy"], overwrite=True)


# -- sketchgen train --------------------------------------------------------------------------

USERS_RUN_LIKE_FOLDER = {"config.toml": "my = 'settings'\n", "log.jsonl": "{}\n",
                         "losses.png": "my figure", "notes.txt": "keep me", ".draft.tmp": "keep",
                         ".notes.20240101.tmp": "named like a killed write's temporary",
                         "samples/mine.png": "my grid"}


def test_train_refuses_a_users_folder_and_leaves_every_byte(tmp_path, capsys):
    out = users_folder(tmp_path / "mine", USERS_RUN_LIKE_FOLDER)
    before = snapshot(tmp_path)
    assert cli.main(["train", *TRAIN, "--steps", "2", "--out", str(out)]) == 2
    error = one_line_error(capsys)
    assert f"{out} is not empty" in error and "pass --overwrite to write into it" in error
    assert snapshot(tmp_path) == before


def test_train_with_overwrite_replaces_its_own_names_only(tmp_path, capsys):
    out = users_folder(tmp_path / "mine", USERS_RUN_LIKE_FOLDER)
    assert cli.main(["train", *TRAIN, "--steps", "2", "--out", str(out), "--overwrite"]) == 0
    after = snapshot(out)
    kept = ("notes.txt", ".draft.tmp", ".notes.20240101.tmp", "samples/mine.png")
    assert {name: after.get(name) for name in kept} == {
        name: USERS_RUN_LIKE_FOLDER[name].encode() for name in kept}
    assert (out / CHECKPOINT).is_file() and "sngan" in (out / CONFIG).read_text()
    assert outputs.MARKER not in after  # still the user's folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-step sngan run (tests that change it work on a copy)."""
    run = tmp_path_factory.mktemp("trained") / "run"
    train(small(run, steps=2))
    return run


def test_a_killed_writes_temporaries_go_from_a_run_folder_of_the_suites(trained, tmp_path):
    run = shutil.copytree(trained, tmp_path / "run")
    stale = [run / ".checkpoint.pt.k1lled0a.tmp", run / "samples" / ".step_000002.png.k1lled0a.tmp"]
    for path in stale:
        path.write_bytes(b"torn")
    train(small(run, steps=3), resume=True)
    assert [path for path in stale if path.exists()] == []


def test_a_run_from_before_markers_keeps_resuming(trained, tmp_path):
    shutil.copytree(trained, tmp_path / "run")
    (tmp_path / "run" / outputs.MARKER).unlink()  # the layout of runs made before markers
    train(small(tmp_path / "run", steps=4), resume=True)
    assert [r["step"] for r in read_jsonl(tmp_path / "run" / "log.jsonl")] == [1, 2, 3, 4]
    with pytest.raises(ConfigError, match="exists: choose another out, or pass resume=True"):
        train(small(tmp_path / "run", steps=4))


def test_a_second_train_on_the_same_out_exits_at_once(tmp_path, capsys):
    """A `sketchgen train` process trains; this process, a second `sketchgen train` on the
    same --out, must stop at once instead of interleaving its log with the first one's."""
    out = tmp_path / "run"
    argv = ["train", *TRAIN, "--steps", "5000", "--checkpoint-every", "100000",
            "--out", str(out)]
    first = subprocess.Popen([sys.executable, "-m", "sketchgen", *argv],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (out / "log.jsonl").exists():  # the first one is training
            assert first.poll() is None, first.stderr.read().decode()
            assert time.monotonic() < deadline, "the first run logged nothing within 120 s"
            time.sleep(0.05)
        status = cli.main(argv)
        assert first.poll() is None  # the second one ended while the first still trains
    finally:
        first.kill()
        first.wait()
        first.stderr.close()
    assert status == 2
    assert one_line_error(capsys) == (
        f"sketchgen train: error: {out} is being written by another sketchgen process "
        f"(pid {first.pid}); wait for it to finish or choose another folder\n")
    steps = [r["step"] for r in read_jsonl(out / "log.jsonl")]
    assert steps == list(range(1, len(steps) + 1))  # one writer


def test_the_run_folder_is_released_when_the_ranks_cannot_agree(tmp_path, monkeypatch):
    """Rank 0 took the folder but telling the other ranks failed (say Ctrl-C while they
    start): the lock must not outlive the call."""

    def interrupted(value: bool) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "_on_rank_zero", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(small(tmp_path / "run", steps=2))
    with outputs.claim(tmp_path / "run", "run"):
        pass


def test_torchrun_ranks_stop_together_when_the_run_is_taken(tmp_path):
    out = tmp_path / "run"
    holder = hold_lock(out)
    try:
        launched = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
             "2", "-m", "sketchgen", "train", *TRAIN, "--steps", "4", "--out", str(out)],
            capture_output=True, text=True, timeout=300)
    finally:
        release(holder)
    assert launched.returncode != 0
    assert f"{out} is being written by another sketchgen process (pid {holder.pid})" in (
        launched.stderr)
    assert not (out / CHECKPOINT).exists()


def test_a_temporary_run_folder_is_deleted_only_while_it_is_the_suites(tmp_path):
    """sketchgen.api's fit(out=None) deletes its temporary run folder through the checked
    delete: a folder that no longer carries the marker (and holds a file of the user's) stays."""
    from sketchgen import api

    drawings = api.load(list(CATEGORIES), per_class=40)
    model = api.fit("sngan", drawings, steps=1, batch_size=8, width=8, progress=False)
    folder = model.run_dir
    (folder / outputs.MARKER).unlink()
    users_folder(folder, {"mine.txt": "mine"})
    try:
        with pytest.raises(errors.OutputError, match="sketchgen did not create it"):
            model.close()
        assert (folder / "mine.txt").read_text() == "mine"
    finally:
        shutil.rmtree(folder)


# -- sketchgen sample -----------------------------------------------------------------------


def test_sample_refuses_to_replace_a_file_unless_overwrite(trained, tmp_path, capsys):
    sidecar = users_folder(tmp_path, {"x.npy.json": "mine"}) / "x.npy.json"
    argv = ["sample", str(trained), "--n", "4", "-o", str(tmp_path / "x.npy")]
    assert cli.main(argv) == 2
    assert f"{sidecar} exists; choose another output, or pass --overwrite to replace it" in (
        one_line_error(capsys))
    assert sidecar.read_text() == "mine" and not (tmp_path / "x.npy").exists()
    assert cli.main([*argv, "--overwrite"]) == 0
    assert json.loads(sidecar.read_text())["labels"] == [0, 1, 0, 1]


def test_sample_does_not_replace_a_file_made_while_it_sampled(trained, tmp_path, monkeypatch):
    """Sampling may take minutes: a file that appears meanwhile is refused too."""
    out, draw = tmp_path / "x.npy", sampling.sample_images

    def meanwhile(*args):
        out.write_text("mine")
        return draw(*args)

    monkeypatch.setattr(sampling, "sample_images", meanwhile)
    with pytest.raises(errors.OutputError, match=f"{out} exists"):
        sampling.write_samples(sampling.load_run(trained), 4, out)
    assert out.read_text() == "mine" and sorted(os.listdir(tmp_path)) == ["x.npy"]


def test_sample_of_a_strokes_model_refuses_an_existing_ndjson(compared, tmp_path, capsys):
    sketch_rnn = compared[0] / WORK / "runs" / "sketch-rnn" / "seed0"
    strokes = users_folder(tmp_path, {"x.ndjson": "mine"}) / "x.ndjson"
    assert cli.main(["sample", str(sketch_rnn), "--n", "4", "-o", str(tmp_path / "x.npy")]) == 2
    assert f"{strokes} exists" in capsys.readouterr().err
    assert strokes.read_text() == "mine" and not (tmp_path / "x.npy").exists()


# -- sketchgen compare ----------------------------------------------------------------------


@pytest.mark.parametrize("where", ["absolute", "relative"])
def test_a_label_that_is_a_path_is_refused_before_any_work(tmp_path, where):
    out = tmp_path / "a" / "report"
    victim = tmp_path / "a" / "victim"  # out/_work/runs/../../../victim
    users_folder(victim, {"keep.txt": "mine",
                          CONFIG: dump_toml(TrainConfig(model="dcgan", categories=("eye",)))})
    config = tiny_config(out)
    config["models"][1]["label"] = str(victim) if where == "absolute" else "../../../victim"
    before = snapshot(tmp_path)
    with pytest.raises(UsageError, match=r"models\[1\]\.label: .* cannot name a file"):
        run_comparison(config_from_dict(config))
    assert snapshot(tmp_path) == before


def test_a_report_name_that_is_a_path_is_refused_before_any_work(tmp_path, monkeypatch):
    (tmp_path / "x" / "y").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "x" / "y")  # reports/../../escape would be x/escape
    config = tiny_config(None, name="../../escape")
    del config["out"]
    with pytest.raises(UsageError, match=r"^name: '../../escape' cannot name a file"):
        run_comparison(config_from_dict(config))
    assert snapshot(tmp_path) == {"x": None, "x/y": None}


@pytest.mark.parametrize(("labels", "why"), [
    (("DCGAN", "dcgan"), "'DCGAN' and 'dcgan' differ only in case"),
    (("a b", "a_b"), "a b on eye and a_b on eye would write one file, training/a_b-eye/"),
    (("dcgan", "dcgan-eye"), "dcgan on eye and dcgan-eye would write one file, "
                             "training/dcgan-eye/"),
])
def test_labels_that_would_share_a_file_are_refused_before_any_work(tmp_path, labels, why):
    """Names become file names ("a b" as a_b; model and category joined by "-"), and some
    file systems ignore case: two models must not write, or read, each other's files."""
    config = tiny_config(tmp_path / "report")
    for model, label in zip(config["models"], labels, strict=True):
        model["label"] = label
    if labels[0] == "a b":  # two unconditional models
        config["models"][1] = config["models"][0] | {"label": labels[1]}
    with pytest.raises(UsageError, match=f"^models: {re.escape(why)}"):
        run_comparison(config_from_dict(config))
    assert os.listdir(tmp_path) == []


USERS_REPORT_LIKE_FOLDER = {"README.md": "# my project\n", "results.csv": "mine,1\n",
                            "grids/mine.png": "my grid", "training/notes.txt": "my notes",
                            "other.txt": "keep me"}


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """A tiny comparison in a folder of its own; its config file."""
    root = tmp_path_factory.mktemp("owned")
    toml = write_toml(root / "tiny.toml", tiny_config(root / "report"))
    assert cli.main(["compare", toml]) == 0
    return root / "report", toml


def loaded_classifier(report) -> dict:
    """The [classifier] table of a tiny config that loads ``report``'s classifier."""
    return {"load": str(report / WORK / "classifier.pt")}


def loading(compared, out) -> dict:
    """The tiny config for ``out``, scoring ``compared``'s runs and classifier (no training)."""
    work = compared[0] / WORK
    config = tiny_config(out, classifier=loaded_classifier(compared[0]))
    for model in config["models"]:
        model["load"] = str(work / "runs" / model["model"] / "seed0")
    return config


def test_compare_refuses_a_users_folder_and_with_overwrite_deletes_none_of_it(
        compared, tmp_path, capsys):
    out = users_folder(tmp_path / "mine", USERS_REPORT_LIKE_FOLDER)
    toml = write_toml(tmp_path / "tiny.toml", loading(compared, out))
    before = snapshot(tmp_path)
    assert cli.main(["compare", toml]) == 2
    error = one_line_error(capsys)
    assert f"{out} is not empty" in error and "pass --overwrite to write into it" in error
    assert snapshot(tmp_path) == before

    for _ in range(2):  # the second run must not clear what the first wrote around the files
        assert cli.main(["compare", toml, "--overwrite"]) == 0
        after = snapshot(out)
        kept = ("grids/mine.png", "training/notes.txt", "other.txt")
        assert {name: after.get(name) for name in kept} == {
            name: USERS_REPORT_LIKE_FOLDER[name].encode() for name in kept}
        assert "grids/dcgan-eye.png" in after and outputs.MARKER not in after


def test_a_report_folder_records_what_it_wrote(compared):
    out, _ = compared
    marker = json.loads((out / outputs.MARKER).read_text())
    files = {path.relative_to(out).as_posix() for path in out.rglob("*")
             if path.is_file() and WORK not in path.parts}
    assert marker["kind"] == "report" and set(marker["written"]) == files - {outputs.MARKER}
    assert "grids/dcgan-eye.png" in marker["written"] and "README.md" in marker["written"]
    assert outputs.is_owned(out / WORK / "runs" / "sketch-rnn" / "seed0", "run")


def test_a_rerun_removes_what_it_wrote_before_and_nothing_else(compared, tmp_path):
    out, _ = compared
    toml = write_toml(tmp_path / "tiny.toml", tiny_config(out, classifier=loaded_classifier(out)))
    users_folder(out, {"notes.txt": "mine", "grids/mine.png": "my grid"})
    gone = out / "grids" / "gone-eye.png"  # a model since removed from the config
    gone.write_bytes(b"old grid")
    with outputs.claim(out, "report") as claimed:
        claimed.record([gone])
    assert cli.main(["compare", toml]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "grids" / "mine.png").read_text() == "my grid"
    assert not gone.exists() and (out / "grids" / "dcgan-eye.png").is_file()


def test_a_second_comparison_on_the_same_folder_exits_at_once(compared, capsys):
    out, toml = compared
    holder = hold_lock(out, "report")
    try:
        assert cli.main(["compare", toml]) == 2
    finally:
        release(holder)
    assert (f"{out} is being written by another sketchgen process (pid {holder.pid})"
            in one_line_error(capsys))


def test_a_changed_run_that_sketchgen_did_not_create_is_not_deleted(compared, tmp_path):
    out, _ = compared
    run = out / WORK / "runs" / "sketch-rnn" / "seed0"
    (run / outputs.MARKER).unlink()  # as if the user had put a run of their own there
    users_folder(run, {"mine.txt": "mine"})
    before = snapshot(run)
    config = tiny_config(out, classifier=loaded_classifier(out))
    config["models"][1]["steps"] = 3
    try:
        with pytest.raises(UsageError, match=f"refusing to delete {run}: sketchgen did not "
                                             "create it"):
            run_comparison(config_from_dict(config))
        assert snapshot(run) == before
    finally:
        (run / outputs.MARKER).write_text(json.dumps({"kind": "run", "written": []}))
