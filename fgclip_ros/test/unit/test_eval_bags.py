# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""fgclip-eval-bags on a few tiny sample bags (mcap and sqlite3, one truncated) with the tiny model.

The in-process run (--workers 1) is the reference: a local Ray runtime with 2 workers must give the
same report bag by bag; a rerun recomputes exactly the bags whose result is missing or stale.
"""

import dataclasses
import json
import os
import shutil

import pytest
from conftest import write_tiny_manifest

from fgclip_ros.bags.reader import BagReader
from fgclip_ros.bags.sample import SampleBagConfig, write_sample_bag
from fgclip_ros.cli.eval_bags import main
from fgclip_ros.core.errors import FgclipError
from fgclip_ros.evaluation.bag import OUTPUT_DETECTIONS_TOPIC
from fgclip_ros.evaluation.bag_set import bag_id, find_bags

SMALL = {"frames": 5, "width": 96, "height": 72}
# Vary from run to run however the bags are scheduled; everything else must not.
RUN_DEPENDENT = {"timing", "process_ms", "elapsed_s", "worker"}


@pytest.fixture(scope="module")
def bag_set(tmp_path_factory):
    """recordings/{mcap_unpaired, site_b/sqlite_jpeg, truncated}: two good bags, one corrupt."""
    root = tmp_path_factory.mktemp("recordings")
    write_sample_bag(root / "mcap_unpaired", SampleBagConfig(**SMALL, seed=1, drop_detections=0.4))
    write_sample_bag(
        root / "site_b" / "sqlite_jpeg",
        SampleBagConfig(**SMALL, seed=2, storage="sqlite3", image_format="jpeg"),
    )
    write_sample_bag(root / "truncated", SampleBagConfig(**SMALL, seed=3))
    storage_file = next((root / "truncated").glob("*.mcap"))
    os.truncate(storage_file, storage_file.stat().st_size // 2)
    return root


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return write_tiny_manifest(tmp_path_factory.mktemp("model"))


def _run(inputs, manifest, out, *extra) -> int:
    return main(
        [
            *map(str, inputs),
            "--model",
            str(manifest),
            "--device",
            "cpu",
            "--queries-from-ground-truth",
            "--out",
            str(out),
            "--no-progress",
            "-q",
            *extra,
        ]
    )


def _report(out) -> dict:
    return json.loads((out / "report.json").read_text())


def _without(data: dict, keys: set) -> dict:
    return {k: v for k, v in data.items() if k not in keys}


@pytest.fixture(scope="module")
def reference(bag_set, manifest, tmp_path_factory):
    """The in-process run and its exit status."""
    out = tmp_path_factory.mktemp("in_process")
    return _run([bag_set], manifest, out, "--workers", "1"), out


def test_the_corrupt_bag_is_reported_and_the_others_complete(reference, bag_set, capsys):
    status, out = reference
    assert status == 1  # some bag failed
    report = _report(out)
    by_name = {e["bag_id"].rsplit("-", 1)[0]: e for e in report["bags"]}
    assert sorted(by_name) == ["mcap_unpaired", "sqlite_jpeg", "truncated"]
    bad = by_name["truncated"]
    assert bad["status"] == "failed" and str(bag_set / "truncated") in bad["reason"]
    assert "truncated or corrupt" in bad["reason"]
    assert not (out / "bags" / bad["bag_id"]).exists()
    good = [by_name["mcap_unpaired"], by_name["sqlite_jpeg"]]
    assert [e["status"] for e in good] == ["ok", "ok"] and [e["storage"] for e in good] == ["mcap", "sqlite3"]
    assert good[0]["counts"]["unpaired_images"] > 0  # the detector skipped frames of this bag
    total = report["overall"]
    assert (total["completed"], total["failed"]) == (2, 1)
    assert total["counts"]["frames_processed"] == sum(e["counts"]["frames_processed"] for e in good)
    assert total["accuracy"]["answerable"] == sum(e["accuracy"]["answerable"] for e in good)
    assert total["accuracy"]["correct"] == sum(e["accuracy"]["correct"] for e in good)
    assert total["ranking"]["objects"] == sum(e["ranking"]["objects"] for e in good)
    for entry in good:  # each bag's own report, as fgclip-eval-bag writes it, next to its result
        folder = out / "bags" / entry["bag_id"]
        own = json.loads((folder / "report.json").read_text())
        assert own["accuracy"]["correct"] == entry["accuracy"]["correct"]
        assert own["bag"]["path"] == entry["path"]
    for name in ("accuracy", "ranks", "latency", "counts"):
        assert (out / f"{name}.png").stat().st_size > 1000
    summary = (out / "summary.md").read_text()
    assert "truncated or corrupt" in summary and "accuracy.png" in summary


def test_a_local_ray_run_with_two_workers_equals_the_in_process_run(reference, bag_set, manifest, tmp_path):
    status, out = reference
    ray_out = tmp_path / "ray"
    # The workers also write each bag's outputs into its folder (as fgclip-eval-bag --write-bag).
    assert _run([bag_set], manifest, ray_out, "--workers", "2", "--write-bags") == status
    expected, got = _report(out), _report(ray_out)
    assert got["run"]["ray"] and got["run"]["workers"] == 2
    driver = {e["worker"] for e in expected["bags"]}
    assert {e["worker"] for e in got["bags"] if e["status"] == "ok"}.isdisjoint(driver)  # done in actors
    assert [_without(e, RUN_DEPENDENT) for e in got["bags"]] == [
        _without(e, RUN_DEPENDENT) for e in expected["bags"]
    ]
    assert _without(got["overall"], {"process_ms"}) == _without(expected["overall"], {"process_ms"})
    for entry in expected["bags"]:
        if entry["status"] == "ok":
            mine, theirs = (
                json.loads((o / "bags" / entry["bag_id"] / "report.json").read_text()) for o in (out, ray_out)
            )
            assert _without(theirs, {"timing", "written_bag"}) == _without(mine, {"timing"})
            with BagReader(theirs["written_bag"]) as written:
                assert written.topics[OUTPUT_DETECTIONS_TOPIC].count == mine["counts"]["frames_processed"]
            assert (out / "bags" / entry["bag_id"] / "detections.jsonl").read_text() == (
                ray_out / "bags" / entry["bag_id"] / "detections.jsonl"
            ).read_text()


def test_a_rerun_recomputes_exactly_the_bags_without_a_matching_result(
    reference, bag_set, manifest, tmp_path
):
    _, reference_out = reference
    out = tmp_path / "rerun"
    shutil.copytree(reference_out, out)
    deleted = bag_id(bag_set / "mcap_unpaired")
    kept = bag_id(bag_set / "site_b" / "sqlite_jpeg")
    shutil.rmtree(out / "bags" / deleted)
    kept_result = (out / "bags" / kept / "result.json").stat().st_mtime_ns

    assert _run([bag_set], manifest, out, "--workers", "1") == 1
    reused = {e["bag_id"]: e["reused"] for e in _report(out)["bags"]}
    truncated = bag_id(bag_set / "truncated")
    assert reused == {deleted: False, kept: True, truncated: False}  # failed bags are always retried
    assert (out / "bags" / kept / "result.json").stat().st_mtime_ns == kept_result
    assert json.loads((out / "bags" / deleted / "report.json").read_text())["counts"]["frames_processed"] > 0

    # Other queries: every result is stale.
    assert _run([bag_set], manifest, out, "--workers", "1", "--query", "a red mug") == 1
    assert not any(e["reused"] for e in _report(out)["bags"])
    # A rewritten bag: only that one.
    os.utime(bag_set / "site_b" / "sqlite_jpeg" / "metadata.yaml")
    assert _run([bag_set], manifest, out, "--workers", "1", "--query", "a red mug") == 1
    assert {e["bag_id"]: e["reused"] for e in _report(out)["bags"]} == {
        deleted: True,
        kept: False,
        truncated: False,
    }
    # --force: all of them.
    assert _run([bag_set], manifest, out, "--workers", "1", "--query", "a red mug", "--force") == 1
    assert not any(e["reused"] for e in _report(out)["bags"])


def test_inputs_are_bags_folders_searched_recursively_and_list_files(bag_set, tmp_path):
    good = [bag_set / "mcap_unpaired", bag_set / "site_b" / "sqlite_jpeg"]
    assert find_bags([bag_set]) == [*good, bag_set / "truncated"]
    listing = tmp_path / "bags.txt"
    listing.write_text(f"# the good ones\n{good[1]}\n\n{os.path.relpath(good[0], tmp_path)}\n")
    assert find_bags([listing]) == [good[1], good[0]]
    # A storage file inside a bag folder stands for the bag, once.
    storage_file = next(good[0].glob("*.mcap"))
    assert find_bags([storage_file, good[0]]) == [good[0]]
    with pytest.raises(FgclipError, match="does not exist"):
        find_bags([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FgclipError, match="no bags"):
        find_bags([tmp_path / "empty"])


def test_no_bags_or_a_missing_model_file_is_a_user_error(bag_set, manifest, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert _run([tmp_path / "empty"], manifest, tmp_path / "out") == 2
    assert "no bags" in capsys.readouterr().err
    model = tmp_path / "model"
    shutil.copytree(manifest.parent, model)
    (model / "tiny.pt").unlink()
    assert _run([bag_set / "mcap_unpaired"], model / "tiny.yaml", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "tiny.pt" in err and not (tmp_path / "out" / "report.json").exists()


def test_ray_workers_report_every_frame_to_the_one_progress_bar(bag_set, manifest, tmp_path):
    from fgclip_ros.cli.eval_bag import build_parser, evaluation_options, model_spec
    from fgclip_ros.evaluation.bag_set import EvalJob, RunProgress, image_messages
    from fgclip_ros.evaluation.bag_set_ray import run_on_ray

    args = build_parser().parse_args(
        ["unused", "--model", str(manifest), "--device", "cpu", "--queries-from-ground-truth"]
    )
    job = EvalJob(model_spec(args), evaluation_options(args), tmp_path)
    bags = [bag_set / "mcap_unpaired", bag_set / "site_b" / "sqlite_jpeg"]
    tasks = [
        dataclasses.replace(t, frames=image_messages(t.path, None))
        for t in job.tasks(bags, {"model": "tiny"})
    ]

    class Recording(RunProgress):
        reported: dict[int, int] = {}

        def frames(self, index, count=1):
            if index in self.seen:  # the bag has not ended yet
                self.reported[index] = self.reported.get(index, 0) + count
            super().frames(index, count)

    progress = Recording(tasks, reused=0, enabled=False)
    entries = run_on_ray(job, tasks, progress, workers=2, threads=1)
    assert [e["status"] for e in entries] == ["ok", "ok"]
    # Every image message read in an actor came back to the driver's bar, before its bag ended.
    assert progress.reported == {t.index: t.frames for t in tasks} and all(t.frames > 0 for t in tasks)
    assert progress.done == 2 and progress.failed == 0
