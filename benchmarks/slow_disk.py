"""A slow disk to benchmark on: a FUSE passthrough filesystem that adds a fixed delay to every fsync.

Network shares (SMB, NFS) and USB sticks acknowledge an ``fsync`` only after the data reached the server or
the flash, which takes milliseconds to hundreds of milliseconds; the local virtual disk of a dev box answers in
microseconds. Mounting a folder through this filesystem makes every ``fsync``/``fdatasync`` (and, optionally,
every ``write``) take at least the given time, so the label-commit benchmarks can measure what a user on such a
share would feel.

Benchmark tool only: it needs ``fuse3`` (``apt-get install fuse3``), ``/dev/fuse`` and the ``mfusepy`` binding
(``pip install mfusepy`` into the benchmark's environment). lrpseg itself never imports a FUSE library.

Use as a context manager (the filesystem runs in a child process and is unmounted on leaving)::

    with slow_disk.mounted(Path("/tmp/slow"), fsync_ms=200) as folder:
        ...  # files written under ``folder`` land in a hidden backing folder; fsync sleeps 200 ms

or from a shell, in the foreground until Ctrl+C::

    python benchmarks/slow_disk.py BACKING MOUNTPOINT --fsync-ms 200
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def _operations(root: str, fsync_s: float, write_s: float):
    """The passthrough operations (built lazily so that importing this module needs no FUSE binding)."""
    import mfusepy

    class SlowPassthrough(mfusepy.Operations):
        use_ns = True

        def _full(self, path: str) -> str:
            return os.path.join(root, path.lstrip("/"))

        def access(self, path, amode):
            if not os.access(self._full(path), amode):
                raise OSError(errno.EACCES, path)
            return 0

        def chmod(self, path, mode):
            os.chmod(self._full(path), mode)
            return 0

        def chown(self, path, uid, gid):
            os.chown(self._full(path), uid, gid)
            return 0

        def getattr(self, path, fh=None):
            st = os.fstat(fh) if fh is not None else os.lstat(self._full(path))
            keys = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime_ns", "st_mtime_ns",
                    "st_ctime_ns", "st_ino", "st_dev", "st_blocks", "st_blksize")
            out = {key: getattr(st, key) for key in keys}
            for key in ("st_atime", "st_mtime", "st_ctime"):
                out[key] = out.pop(key + "_ns")
            return out

        def readdir(self, path, fh):
            return [".", "..", *os.listdir(self._full(path))]

        def readlink(self, path):
            return os.readlink(self._full(path))

        def mknod(self, path, mode, dev):
            os.mknod(self._full(path), mode, dev)
            return 0

        def mkdir(self, path, mode):
            os.mkdir(self._full(path), mode)
            return 0

        def rmdir(self, path):
            os.rmdir(self._full(path))
            return 0

        def unlink(self, path):
            os.unlink(self._full(path))
            return 0

        def symlink(self, target, source):
            os.symlink(source, self._full(target))
            return 0

        def rename(self, old, new):
            os.rename(self._full(old), self._full(new))
            return 0

        def link(self, target, source):
            os.link(self._full(source), self._full(target))
            return 0

        def utimens(self, path, times=None):
            os.utime(self._full(path), ns=times)
            return 0

        def statfs(self, path):
            st = os.statvfs(self._full(path))
            keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag",
                    "f_frsize", "f_namemax")
            return {key: getattr(st, key) for key in keys}

        def open(self, path, flags):
            return os.open(self._full(path), flags)

        def create(self, path, mode, fi=None):
            return os.open(self._full(path), os.O_RDWR | os.O_CREAT, mode)  # SQLite reads what it creates

        def read(self, path, size, offset, fh):
            return os.pread(fh, size, offset)

        def write(self, path, data, offset, fh):
            if write_s:
                time.sleep(write_s)
            return os.pwrite(fh, data, offset)

        def truncate(self, path, length, fh=None):
            if fh is not None:
                os.ftruncate(fh, length)
            else:
                os.truncate(self._full(path), length)
            return 0

        def flush(self, path, fh):
            return 0

        def release(self, path, fh):
            os.close(fh)
            return 0

        def fsync(self, path, datasync, fh):
            time.sleep(fsync_s)
            (os.fdatasync if datasync else os.fsync)(fh)
            return 0

        def fsyncdir(self, path, datasync, fh):
            time.sleep(fsync_s)
            return 0

    return SlowPassthrough()


def serve(backing: Path, mountpoint: Path, fsync_ms: float, write_ms: float = 0.0) -> None:
    """Mount ``backing`` at ``mountpoint`` with the delays and serve it until unmounted (blocks)."""
    import mfusepy

    operations = _operations(str(backing.resolve()), fsync_ms / 1000, write_ms / 1000)
    mfusepy.FUSE(operations, str(mountpoint), foreground=True, fsname="lrpseg-slow-disk")


@contextlib.contextmanager
def mounted(mountpoint: Path, fsync_ms: float, write_ms: float = 0.0, timeout_s: float = 10.0) -> Iterator[Path]:
    """Mount a fresh slow folder at ``mountpoint`` for the block; yields the mounted folder.

    The backing files live in a temporary folder next to ``mountpoint`` and are removed afterwards.

    Raises
    ------
    RuntimeError
        The filesystem did not come up within ``timeout_s`` (no ``/dev/fuse``, no ``fusermount3``, or
        ``mfusepy`` missing); the message holds the child's output.
    """
    mountpoint.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="slow-disk-backing-", dir=mountpoint.parent) as backing:
        child = subprocess.Popen(
            [sys.executable, __file__, backing, str(mountpoint), "--fsync-ms", str(fsync_ms),
             "--write-ms", str(write_ms)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            deadline = time.monotonic() + timeout_s
            while not os.path.ismount(mountpoint):
                if child.poll() is not None or time.monotonic() > deadline:
                    child.kill()
                    raise RuntimeError(f"slow disk did not mount at {mountpoint}: {child.communicate()[0]}")
                time.sleep(0.05)
            yield mountpoint
        finally:
            if os.path.ismount(mountpoint):  # lazily: a file left open must not keep the mount alive
                subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], check=False)
            try:
                child.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backing", type=Path, help="folder holding the files")
    parser.add_argument("mountpoint", type=Path, help="where the slow view of it appears")
    parser.add_argument("--fsync-ms", type=float, default=200.0, help="delay added to each fsync")
    parser.add_argument("--write-ms", type=float, default=0.0, help="delay added to each write call")
    args = parser.parse_args()
    serve(args.backing, args.mountpoint, args.fsync_ms, args.write_ms)


if __name__ == "__main__":
    main()
