"""``data.source: dvc``: a data/raw versioned in a real DVC project, read back from its remote."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from signflow.config import DataParams, ParamsError, load_params
from signflow.index import load_index, recorded_probes
from signflow.sources import SourceError, read_status_csv, run_download
from signflow.sources.probes import probe_file

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
}


def _run(*args: str, cwd: Path) -> None:
    result = subprocess.run(args, cwd=cwd, env=GIT_ENV, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _dvc(*args: str, cwd: Path) -> None:
    _run(sys.executable, "-m", "dvc", *args, cwd=cwd)


def _synthetic_raw(out: Path) -> None:
    params = DataParams.model_validate(
        {"synthetic": {"num_glosses": 2, "signers": 1, "repetitions": 2, "frames": 8, "lead_frames": 0,
                       "width": 32, "height": 32, "num_workers": 1}}
    )
    run_download(params, out)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A git + DVC project whose data/raw lives only on a local remote (no cache, no workspace copy).

    Tag ``v1`` has the synthetic raw folder plus an index entry whose file was never added;
    the branch head has one more video.
    """
    root = tmp_path_factory.mktemp("dvcsrc")
    repo, remote = root / "repo", root / "remote"
    repo.mkdir()
    _run("git", "init", "-q", "-b", "main", cwd=repo)
    _dvc("init", "-q", cwd=repo)
    _dvc("remote", "add", "-d", "store", str(remote), cwd=repo)
    raw = repo / "data" / "raw"
    _synthetic_raw(raw)
    index = json.loads((raw / "index.json").read_text())
    index[0]["instances"].append({"video_id": "ghost", "split": "train", "file": "videos/ghost.mp4"})
    (raw / "index.json").write_text(json.dumps(index))
    _dvc("add", "-q", "data/raw", cwd=repo)
    _run("git", "add", "-A", cwd=repo)
    _run("git", "commit", "-q", "-m", "v1", cwd=repo)
    _run("git", "tag", "v1", cwd=repo)
    first = raw / index[0]["instances"][0]["file"]
    shutil.copy(first, raw / "videos" / "extra.mp4")
    # Written as before download recorded probes: "extra" has none (fetch probes what arrived).
    extra = {key: value for key, value in index[0]["instances"][0].items() if key != "probe"}
    index[0]["instances"].append({**extra, "video_id": "extra", "file": "videos/extra.mp4"})
    (raw / "index.json").write_text(json.dumps(index))
    _dvc("add", "-q", "data/raw", cwd=repo)
    _run("git", "commit", "-q", "-am", "v2", cwd=repo)
    _dvc("push", "-q", "--all-tags", "--all-branches", cwd=repo)
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(raw)
    return {"repo": repo, "remote": remote}


def _params(repo: Path | str, **dvc: str) -> DataParams:
    return DataParams.model_validate({"source": "dvc", "dvc": {"repo": str(repo), **dvc}})


@pytest.mark.slow  # a real git + DVC project, pushed to a local remote (~6 s of setup)
def test_fetches_the_versioned_raw_from_the_remote(project: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "raw"
    summary = run_download(_params(project["repo"]), out)
    rows = {row.video_id: row for row in read_status_csv(out / "status.csv")}
    assert summary["source"] == "dvc" and summary["ok"] == 5 and summary["missing"] == 1
    assert rows["ghost"].status == "missing" and "not on the remote" in rows["ghost"].reason
    assert rows["extra"].status == "ok" and (out / "videos" / "extra.mp4").stat().st_size == rows["extra"].bytes
    # The written index names only files that arrived.
    index = json.loads((out / "index.json").read_text())
    files = [inst.get("file") for entry in index for inst in entry["instances"]]
    assert all((out / f).is_file() for f in files if f) and files.count(None) == 1


def test_recorded_probes_arrive_and_a_video_without_one_is_probed(project: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "raw"
    run_download(_params(project["repo"]), out)
    entries = load_index(out / "index.json")
    obtained = {inst.video_id: inst for entry in entries for inst in entry.instances if inst.file}
    probes = recorded_probes(entries)
    assert set(probes) == set(obtained) and "extra" in probes  # so crop needs index.json alone
    for video_id, inst in obtained.items():
        assert probes[video_id] == probe_file(out / inst.file)


@pytest.mark.slow  # a real git + DVC project, pushed to a local remote (~6 s of setup)
def test_rev_pins_an_older_version(project: dict[str, Path], tmp_path: Path) -> None:
    summary = run_download(_params(project["repo"], rev="v1"), tmp_path / "raw")
    assert summary["ok"] == 4 and not (tmp_path / "raw" / "videos" / "extra.mp4").exists()


@pytest.mark.slow  # a real git + DVC project, pushed to a local remote (~6 s of setup)
def test_refusals_say_what_is_wrong(project: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="has no index.json"):
        run_download(_params(project["repo"], path="data/nothing"), tmp_path / "a")
    with pytest.raises(SourceError, match="cannot open.*RevError"):
        run_download(_params(project["repo"], rev="no-such-tag"), tmp_path / "c")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="has no index.json"):
        run_download(_params(empty), tmp_path / "d")  # not a DVC project, nothing there


def test_dvc_source_needs_a_repo(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  source: dvc\n")
    with pytest.raises(ParamsError, match="data.dvc.repo is required"):
        load_params(params)


@pytest.mark.slow  # a real git + DVC project, pushed to a local remote (~6 s of setup)
def test_a_git_url_is_cloned_without_a_git_binary(project: dict[str, Path], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """What a pod does: clone the project by URL (dulwich; the image has no git) and read the remote."""
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    summary = run_download(_params(f"file://{project['repo']}", rev="v1"), tmp_path / "raw")
    assert summary["ok"] == 4 and summary["missing"] == 1
