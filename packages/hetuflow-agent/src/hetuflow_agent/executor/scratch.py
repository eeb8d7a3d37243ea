"""Task directories, recycled: an attempt's directory is renamed into the next one's instead of deleted.

Every attempt runs in its own ``<workdir>/tasks/<instance_id>`` (its default working directory, and
where its script is written), created before it starts and gone after it ends. Made and removed afresh,
that is a new directory and a new script file per attempt. On ext4, allocating inodes at the rate the
agent frees them makes the allocator skip over every recently deleted one: measured on a busy agent,
that search was the largest kernel cost of an attempt (a make-and-remove cycle 170 µs of CPU and over a
millisecond of waiting, against 55 µs and 0.1 ms for a recycled one).

So a directory an attempt left as it found it — nothing in it but the script the agent wrote, still a
plain file with one link — is renamed to ``.spare-<instance_id>`` and kept; the next attempt renames a
spare to its own name and overwrites the script in place. Whatever else an attempt leaves behind sends
its directory to the bin instead, so every attempt still starts in an empty directory (but for its own
script). Spares are removed by ``clear``, and by the orphan reaper after a crash.

Task directories are made ``0700`` and scripts ``0600`` whatever the umask: a script may hold what its job
keeps from other users of the host, and an attempt's files are its own. A directory whose task changed those
modes is deleted rather than recycled.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import threading
from pathlib import Path
from typing import Final, NamedTuple

__all__ = ["DIR_MODE", "SCRIPT_MODE", "SPARE_PREFIX", "ScratchDirs"]

SPARE_PREFIX: Final = ".spare-"
_OPEN_SCRIPT: Final = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
DIR_MODE: Final = 0o700
"""Mode of a task directory: its owner's (the agent's user) alone."""
SCRIPT_MODE: Final = 0o600
"""Mode of a script file: read and written by its owner alone (it is run by an interpreter, not exec'd)."""


class _Spare(NamedTuple):
    path: str
    script: str | None
    """The name of the script file it still holds, if any."""


class ScratchDirs:
    """Makes and recycles the task directories under ``tasks_root``; keeps at most ``keep`` spares.

    Safe to call from several threads (each directory is used by one attempt at a time).
    """

    def __init__(self, tasks_root: Path, *, keep: int) -> None:
        self._root = str(tasks_root)
        self._keep = keep
        self._spares: list[_Spare] = []
        self._lock = threading.Lock()

    def make(self, task_dir: Path, script: str | None) -> None:
        """Create ``task_dir``, empty but for possibly a file named ``script`` to overwrite.

        Raises ``OSError`` when the directory cannot be made.
        """
        spare = self._take(script)
        if spare is not None:
            try:
                os.rename(spare.path, task_dir)
            except OSError:
                shutil.rmtree(spare.path, ignore_errors=True)
            else:
                if spare.script is not None and spare.script != script:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(task_dir, spare.script))
                return
        _make_dir(task_dir)

    @staticmethod
    def write_script(path: str, data: bytes) -> None:
        """Write ``data`` as the file ``path``, in place if a recycled directory left one there."""
        try:
            fd = os.open(path, _OPEN_SCRIPT, SCRIPT_MODE)
        except OSError:
            # Not a file we can write (a task replaced or locked it): start from a new one.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            fd = os.open(path, _OPEN_SCRIPT | os.O_EXCL, SCRIPT_MODE)
        try:
            os.fchmod(
                fd, SCRIPT_MODE
            )  # a file found in place keeps its mode, and the umask narrows a new one
            view = memoryview(data)
            written = 0
            while written < len(data):
                written += os.pwrite(fd, view[written:], written)
            os.ftruncate(fd, len(data))  # in place: a longer earlier script must not shine through
        finally:
            os.close(fd)

    def release(self, task_dir: str, script: str | None, spare_name: str) -> None:
        """The attempt in ``task_dir`` is over: keep the directory as a spare, or delete it.

        ``script`` is the name of the script file the agent wrote there, if any; ``spare_name`` a name
        no other spare has (the instance id).
        """
        if self._has_room() and _as_left(task_dir, script):
            spare = os.path.join(self._root, SPARE_PREFIX + spare_name)
            try:
                os.rename(task_dir, spare)
            except OSError:
                pass
            else:
                with self._lock:
                    self._spares.append(_Spare(spare, script))
                return
        _remove(task_dir, script)

    def clear(self) -> None:
        """Delete every spare."""
        with self._lock:
            spares, self._spares = self._spares, []
        for spare in spares:
            _remove(spare.path, spare.script)

    def _has_room(self) -> bool:
        with self._lock:
            return len(self._spares) < self._keep

    def _take(self, script: str | None) -> _Spare | None:
        with self._lock:
            if not self._spares:
                return None
            for index in range(len(self._spares) - 1, -1, -1):
                if self._spares[index].script in (script, None):  # nothing to unlink first
                    return self._spares.pop(index)
            return self._spares.pop()


def _as_left(task_dir: str, script: str | None) -> bool:
    """True when ``task_dir`` holds nothing but the agent's own ``script`` (a plain file, one link)."""
    try:
        mode = os.lstat(task_dir).st_mode
        if not stat.S_ISDIR(mode) or stat.S_IMODE(mode) != DIR_MODE:
            return False
        names = os.listdir(task_dir)
        if not names:
            return True
        if names != [script] or script is None:
            return False
        info = os.lstat(os.path.join(task_dir, script))
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_nlink == 1 and stat.S_IMODE(info.st_mode) == SCRIPT_MODE


def _remove(task_dir: str, script: str | None) -> None:
    # The common case holds only the script: an unlink and a rmdir instead of rmtree's walk.
    if script is not None:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            os.unlink(os.path.join(task_dir, script))
    try:
        os.rmdir(task_dir)
    except FileNotFoundError:
        pass
    except OSError:
        shutil.rmtree(task_dir, ignore_errors=True)


def _make_dir(path: Path) -> None:
    try:
        os.mkdir(path, DIR_MODE)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)  # the first attempt: create the parents too
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise
    # mkdir's mode passes through the umask, which may only take bits away: set exactly the mode wanted.
    os.chmod(path, DIR_MODE)
