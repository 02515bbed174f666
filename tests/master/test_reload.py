"""``--reload``: the real CLI with a real file watcher, over real sockets.

The app under test lives in a temporary directory; each test edits it and waits for the
server to answer with the new code (never a fixed sleep)."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import psutil
import pytest

from tests.master.test_processes import (
    LISTENING_RE,
    ROOT,
    clean_env,
    group_gone,
    run_cli,
    run_to_end,
    wait_log,
)
from tests.utils import TIME_UNIT, wait_for
from tricorn.config import Config
from tricorn.master.watcher import ChangeFilter, describe_changes, forget_user_modules, watched_dirs

APP = """\
import os

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b"{version} %d" % os.getpid()
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": body}})
"""


def write_app(directory: Path, version: str, name: str = "app.py") -> None:
    # Written whole then renamed, as editors do: the watcher never sees half a file.
    tmp = directory / f".{name}.tmp"
    tmp.write_text(APP.format(version=version))
    tmp.replace(directory / name)


def answer(url: str) -> str:
    try:
        return httpx.get(url, timeout=2 * TIME_UNIT).text.split()[0]
    except httpx.HTTPError:
        return ""


@pytest.fixture
def src(tmp_path: Path) -> Path:
    directory = tmp_path / "src"
    directory.mkdir()
    write_app(directory, "v1")
    return directory


def test_edit_reloads_and_a_broken_edit_waits_for_the_fix(tmp_path: Path, src: Path) -> None:
    args = ["--reload", "--reload-dir", str(src), "--app-dir", str(src)]
    with run_cli(tmp_path, *args, app="app:app") as master:
        wait_for(lambda: answer(master.url) == "v1", what=f"v1\n{master.log()}")
        wait_log(master, "Started reloader process")  # armed: edits from now on are seen
        assert f"Will watch for changes in these directories: ['{src}']" in master.log()

        # Files the filter leaves out change first; only app.py may be named.
        (src / "notes.txt").write_text("not code")
        (src / ".hidden.py").write_text("x = 1")
        write_app(src, "v2")
        wait_for(lambda: answer(master.url) == "v2", what=f"v2\n{master.log()}")
        assert "WatchFiles detected changes in 'app.py'. Reloading..." in master.log()
        for left_out in ("notes.txt", ".hidden.py", ".app.py.tmp"):
            assert left_out not in master.log()

        (src / "app.py").write_text("def broken(:\n")
        wait_log(master, "failed to start (exit code 3); waiting for file changes")
        assert "SyntaxError" in master.log()
        assert master.proc.poll() is None  # the master keeps watching

        write_app(src, "v3")
        wait_for(lambda: answer(master.url) == "v3", what=f"v3\n{master.log()}")

        master.signal(signal.SIGINT)
        assert master.wait_exit() == 0
    assert group_gone(master.proc.pid)


def test_the_old_code_stops_before_the_new_code_starts(tmp_path: Path, src: Path) -> None:
    # As with uvicorn: an app holding something exclusive (a port, a lock) in its lifespan
    # must not meet its next version.
    args = ["--reload", "--reload-dir", str(src), "--app-dir", str(src)]
    with run_cli(tmp_path, *args, app="app:app") as master:
        wait_for(lambda: answer(master.url) == "v1", what="v1")
        wait_log(master, "Started reloader process")
        write_app(src, "v2")
        wait_for(lambda: answer(master.url) == "v2", what="v2")
        log = master.log()
        old_pid = re.search(r"Worker \[(\d+)\] spawned \(generation 0\)", log)
        new_pid = re.search(r"Worker \[(\d+)\] spawned \(generation 1\)", log)
        assert old_pid and new_pid, log
        exited = log.index(f"Worker [{old_pid.group(1)}] exited")
        assert exited < new_pid.start()


def test_watcher_killed_is_restarted(tmp_path: Path, src: Path) -> None:
    args = ["--reload", "--reload-dir", str(src), "--app-dir", str(src)]
    with run_cli(tmp_path, *args, app="app:app") as master:
        wait_for(lambda: answer(master.url) == "v1", what="v1")
        wait_log(master, "Started reloader process")
        watcher = int(master.log().split("Started reloader process [")[1].split("]")[0])
        os.kill(watcher, signal.SIGKILL)
        wait_log(master, "The --reload file watcher died (signal 9 (SIGKILL)); restarting it")
        wait_log(master, "Started reloader process", count=2)
        write_app(src, "v2")
        wait_for(lambda: answer(master.url) == "v2", what=f"v2\n{master.log()}")


def test_python_api_reloads_a_module_the_script_imported(tmp_path: Path, src: Path) -> None:
    # tricorn.run(..., reload=True) from a script that imported the app's module itself:
    # the forked worker must still import the edited file, not reuse the old module.
    script = src / "serve.py"
    script.write_text(
        textwrap.dedent(
            f"""\
            import app  # imported in the master, before tricorn forks
            import tricorn

            if __name__ == "__main__":
                tricorn.run("app:app", reload=True, port=0, lifespan="off",
                            reload_dirs=[{str(src)!r}])
            """
        )
    )
    log_path = tmp_path / "serve.log"
    env = clean_env(PYTHONPATH=str(ROOT))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(script)],
            cwd=src,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    try:
        wait_for(lambda: LISTENING_RE.search(log_path.read_text()), what="listening")
        match = LISTENING_RE.search(log_path.read_text())
        assert match
        url = match.group(1)
        wait_for(lambda: answer(url) == "v1", what="v1")
        wait_for(lambda: "Started reloader process" in log_path.read_text(), what="armed")
        write_app(src, "v2")
        wait_for(lambda: answer(url) == "v2", what=f"v2\n{log_path.read_text()}")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10 * TIME_UNIT) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_reload_with_preload_is_one_line(tmp_path: Path, src: Path) -> None:
    result = run_to_end("app:app", "--app-dir", str(src), "--reload", "--preload")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "--preload cannot be used with --reload" in output
    assert output.count("\n") == 1, output


def test_reload_options_without_reload_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tricorn.error"):
        Config("app:app", reload_dirs=["tests"], log_config=None)
    assert "do nothing without --reload" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tricorn.error"):
        Config("app:app", reload=True, reload_dirs=["tests"], log_config=None)
    assert "do nothing" not in caplog.text


# -- the watcher's parts, in process --------------------------------------------------------


def test_change_filter_defaults(tmp_path: Path) -> None:
    keep = ChangeFilter([tmp_path], [], [])
    assert keep.matches(tmp_path / "app.py")
    assert keep.matches(tmp_path / "pkg" / "models.py")
    for left_out in ("README.md", ".hidden.py", "app.pyc", ".app.py.swp", "~app.py"):
        assert not keep.matches(tmp_path / left_out), left_out
    assert not keep.matches(tmp_path / ".venv" / "lib" / "site.py")  # a dot directory
    assert not keep.matches(tmp_path / "pkg" / ".git" / "hook.py")


def test_change_filter_includes_and_excludes(tmp_path: Path) -> None:
    (tmp_path / "build").mkdir()
    custom = ChangeFilter(
        [tmp_path], ["*.py", "*.html", ".env"], [str(tmp_path / "build"), "test_*"]
    )
    assert custom.matches(tmp_path / "templates" / "index.html")
    assert custom.matches(tmp_path / ".env")  # included on purpose, so not a dot file
    assert not custom.matches(tmp_path / "build" / "gen.py")  # an excluded directory
    assert not custom.matches(tmp_path / "test_app.py")
    assert not custom.matches(tmp_path / "style.css")


def test_watched_dirs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    missing = tmp_path / "missing"
    assert watched_dirs([str(inner), str(tmp_path), str(missing)]) == [tmp_path.resolve()]
    assert f"--reload-dir {missing} is not a directory: not watched" in caplog.text
    assert describe_changes([str(inner / "a.py"), "/elsewhere/b.py"], [tmp_path]) == (
        "'inner/a.py', '/elsewhere/b.py'"
    )


def test_forget_user_modules_keeps_installed_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mine.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import mine  # type: ignore[import-not-found]

    assert mine.VALUE == 1
    dropped = forget_user_modules([str(tmp_path)])
    assert dropped == ["mine"]
    assert "mine" not in sys.modules
    assert forget_user_modules([str(Path(psutil.__file__).parents[1])]) == []  # site-packages
