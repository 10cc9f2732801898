"""Writing output files all or nothing (spec section 13.6).

An :class:`Outputs` is a set of files written together (a model, its data
file, a report). Each is first *staged*: written under a short temporary name
``.mq-XXXXXXXX.tmp`` in its destination's folder (short, so any legal output
name works), then ``fsync``-ed. :meth:`Outputs.commit` renames every staged
file into place (``os.replace``, atomic on POSIX) in staging order and
``fsync``-s the folders; if a rename fails, the files already renamed by this
commit are removed again. Leaving the ``with`` block without a commit removes
every temporary. So a failure leaves no new file, and success leaves each file
whole and on disk before its name appears.

Every temporary (and, until the ``with`` block ends, every file a holding
commit published) is listed in a registry that :func:`remove_pending` empties
by deleting the files: the command line's SIGINT/SIGTERM/SIGHUP handler calls
it, so a signal leaves nothing behind either (SIGKILL cannot be handled; it
leaves at most ``.mq-*.tmp`` files, never a partial file under an output name).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

__all__ = ["Outputs", "remove_pending", "check_special_file", "check_name_length", "writing"]

#: Paths removed by :func:`remove_pending`: temporaries, and files published by a holding commit.
_PENDING: set[str] = set()


def remove_pending() -> None:
    """Delete every registered temporary and held output (for a signal handler: never raises)."""
    for p in list(_PENDING):
        with contextlib.suppress(OSError):
            os.unlink(p)
        _PENDING.discard(p)


def check_special_file(path: Path, what: str) -> None:
    """``OSError`` when ``path`` exists and is neither a regular file nor a symlink (a FIFO, a device, a
    socket): an output never replaces one. A folder is refused by the caller's own message."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode) or stat.S_ISDIR(mode)):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "a special file")
        raise OSError(f"{what} {str(path)!r} is {kind}, expected a regular file name (it is never replaced)")


def check_name_length(path: Path, what: str) -> None:
    """``OSError`` when ``path``'s file name is longer than its folder allows (``NAME_MAX``, 255 bytes)."""
    try:
        limit = os.pathconf(path.parent, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        limit = 255
    if len(os.fsencode(path.name)) > limit:
        raise OSError(f"{what} name {path.name[:40]!r}... is {len(os.fsencode(path.name))} bytes, longer than "
                      f"the {limit} its folder allows")


@contextlib.contextmanager
def writing(dst: Path, tmp: str | os.PathLike = "") -> Iterator[None]:
    """Re-raise an ``OSError`` of writing (``write``/``fsync``: no file name, or the temporary's) as one
    naming ``dst``: "[Errno 28] No space left on device: 'out.onnx'"."""
    try:
        yield
    except OSError as e:
        if e.filename is None or (tmp and str(e.filename) == str(tmp)):
            if e.errno is None:
                raise OSError(f"cannot write {str(dst)!r}: {e}") from None
            raise OSError(e.errno, e.strerror or str(e), str(dst)) from None
        raise


def _fsync_path(path: str | os.PathLike, folder: bool = False) -> None:
    """``fsync`` a file (or a folder's entries; filesystems that cannot are skipped)."""
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if folder else 0))
    try:
        os.fsync(fd)
    except OSError as e:
        if not folder or e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


class Outputs:
    """Files staged under temporary names and published together by :meth:`commit` (see the module).

    ``hold=True`` keeps the published files provisional until the ``with`` block ends: registered for
    :func:`remove_pending` (a signal arriving after the commit but before the command returns removes
    them too) and removed when the block ends with an exception (e.g. printing the report fails).
    """

    def __init__(self, hold: bool = False) -> None:
        self.hold = hold
        self._staged: list[tuple[str, Path]] = []
        self._published: list[Path] = []

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        for tmp, _ in self._staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            _PENDING.discard(tmp)
        for p in self._published:
            if exc_type is not None and self.hold:  # held files are this run's until the block succeeds
                with contextlib.suppress(OSError):
                    os.unlink(p)
            _PENDING.discard(str(p))

    def stage(self, dst: Path) -> str:
        """A new empty temporary file for ``dst`` in its folder (mode 0600, registered); its path."""
        for _ in range(100):
            tmp = str(dst.parent / f".mq-{secrets.token_hex(4)}.tmp")
            _PENDING.add(tmp)  # registered before it exists: a signal in between finds nothing to remove
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                _PENDING.discard(tmp)
                continue
            except OSError as e:
                _PENDING.discard(tmp)
                raise OSError(e.errno, e.strerror, str(dst)) from None
            os.close(fd)
            self._staged.append((tmp, dst))
            return tmp
        raise OSError(f"cannot create a temporary file next to {str(dst)!r}")

    def unstage(self, dst: Path) -> None:
        """Drop the file staged for ``dst``: its temporary is removed and nothing is published for it (a
        data file spooled while a model was built, which ended up written inline)."""
        for i, (tmp, d) in enumerate(self._staged):
            if d == dst:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                _PENDING.discard(tmp)
                del self._staged[i]
                return

    def size(self, dst: Path) -> int:
        """Bytes of the file staged for ``dst``."""
        return next(os.path.getsize(tmp) for tmp, d in self._staged if d == dst)

    def commit(self) -> None:
        """``fsync`` every staged file, rename each into place (staging order), ``fsync`` the folders.

        The renamed files get the mode a new file would (0666 minus the umask).
        On a failure the files this commit already renamed are removed.
        """
        mask = os.umask(0)
        os.umask(mask)
        for tmp, dst in self._staged:
            with writing(dst, tmp):
                _fsync_path(tmp)
                os.chmod(tmp, 0o666 & ~mask)
        try:
            while self._staged:
                tmp, dst = self._staged[0]
                _PENDING.add(str(dst))
                try:
                    with writing(dst, tmp):
                        os.replace(tmp, dst)
                except BaseException:
                    _PENDING.discard(str(dst))  # not replaced: whatever is there is not this run's
                    raise
                self._staged.pop(0)
                _PENDING.discard(tmp)
                self._published.append(dst)
            for folder in {str(dst.parent) for dst in self._published}:
                _fsync_path(folder, folder=True)
        except BaseException:
            for p in self._published:
                with contextlib.suppress(OSError):
                    os.unlink(p)
            raise
        if not self.hold:
            for p in self._published:
                _PENDING.discard(str(p))
