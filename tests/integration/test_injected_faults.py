"""Faults injected in the middle of a study: the disk fills while a trial is written, a kill during the report.

Each must end in one line and exit status 2 (or the interrupt's 130), keep every trial that finished readable,
and let the same command, rerun, resume without a duplicate and rebuild what was cut short."""
from __future__ import annotations

import errno
import json
import os

from tests.conftest import invoke
from transferlab.results import TrialStore

STUDY = ("run", "--model", "demo:mlp", "--data", "demo:digits", "--strategies", "scratch,head", "--seeds", "2",
         "--sizes", "5", "--steps", "20", "--augment", "none")


def _study(out):
    return [*STUDY, "--out", str(out)]


def _ids(out) -> list[str]:
    return [r["trial_id"] for r in TrialStore(out / "trials.jsonl").load()]


def test_a_full_disk_mid_study_gives_one_line_and_the_rerun_resumes(tmp_path, monkeypatch):
    """The disk fills half-way through the third trial's line (os.write itself fails, so the store's own error path
    runs): one line naming the file, exit 2; the two finished trials stay readable past the torn line; the rerun
    resumes, trains only what is missing and duplicates nothing."""
    real, seen = os.write, []

    def write(fd, data):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if target.endswith("trials.jsonl"):
            seen.append(fd)
            if len(seen) == 3:
                real(fd, bytes(data)[:25])
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)
    out = tmp_path / "s"
    code, _, err = invoke(*_study(out))
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith(("  ", "resuming"))]
    assert code == 2, err[-2000:]
    last = [x for x in lines if x.startswith("transferlab: error:")]
    assert len(last) == 1 and "no space left on device" in last[0] and "trials.jsonl" in last[0], err[-2000:]
    assert "Traceback" not in err
    kept = _ids(out)
    assert len(kept) == 2  # the two finished records are readable; the torn third line is ignored
    monkeypatch.setattr(os, "write", real)
    code, _, err = invoke(*_study(out))
    assert code == 0, err[-2000:]
    ids = _ids(out)
    assert len(ids) == len(set(ids)) and set(kept) <= set(ids)  # resumed: nothing lost, nothing twice
    assert (out / "report.html").exists()


def test_a_kill_while_the_report_is_written_leaves_no_partial_report(tmp_path, monkeypatch):
    """Killed (Ctrl-C) after the report's text is written to its temporary file, before it replaces report.html: exit
    130 with the one line, no report.html and no temporary file left; the rerun trains nothing and rebuilds it."""
    import os

    out = tmp_path / "s"
    real = os.replace

    def killed(src, dst, *args, **kwargs):
        if str(dst).endswith("report.html"):
            raise KeyboardInterrupt
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", killed)
    code, _, err = invoke(*_study(out))
    assert code == 130 and "interrupted; finished trials are saved" in err, err[-2000:]
    monkeypatch.setattr(os, "replace", real)
    assert not (out / "report.html").exists() and not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    n = len(_ids(out))
    code, _, err = invoke(*_study(out))
    assert code == 0, err[-2000:]
    assert len(_ids(out)) == n and (out / "report.html").exists()  # nothing retrained; the report rebuilt
    assert oct((out / "report.html").stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # as any file the user writes


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_an_output_folder_that_cannot_be_written_is_one_line(tmp_path, monkeypatch):
    """A read-only place for --out (tests run as root here, so the refusal is injected where the folder is made)."""
    real = os.mkdir

    def mkdir(path, *args, **kwargs):
        if "readonly" in str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    out = tmp_path / "new" / "readonly" / "study"  # new/ is made, then readonly/ is refused: new/ goes again
    code, _, err = invoke(*_study(out))
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1 and "permission denied" in lines[0] and "readonly" in lines[0], err[-2000:]
    assert "--out folder you may write" in lines[0]
    assert not (tmp_path / "new").exists()
