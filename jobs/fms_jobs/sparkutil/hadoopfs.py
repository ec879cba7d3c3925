"""Hadoop FileSystem operations from the driver (HDFS in production, file:// in tests).

Everything goes through the JVM's ``org.apache.hadoop.fs.FileSystem`` so the
same code handles ``hdfs://``, ``file://`` and ``s3a://`` paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass(frozen=True)
class FileInfo:
    path: str
    size: int
    is_dir: bool
    modified_ms: int


class HadoopFS:
    def __init__(self, spark: SparkSession, uri: str) -> None:
        self._jvm: Any = spark.sparkContext._jvm
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()
        self._Path = self._jvm.org.apache.hadoop.fs.Path
        self.fs = self._Path(uri).getFileSystem(self._conf)

    def path(self, p: str) -> Any:
        return self._Path(p)

    def qualify(self, p: str) -> str:
        return str(self.fs.makeQualified(self._Path(p)).toString())

    def exists(self, p: str) -> bool:
        return bool(self.fs.exists(self._Path(p)))

    def mkdirs(self, p: str) -> None:
        self.fs.mkdirs(self._Path(p))

    def delete(self, p: str, recursive: bool = True) -> bool:
        return bool(self.fs.delete(self._Path(p), recursive))

    def rename(self, src: str, dst: str) -> bool:
        return bool(self.fs.rename(self._Path(src), self._Path(dst)))

    def ls(self, p: str) -> list[FileInfo]:
        path = self._Path(p)
        if not self.fs.exists(path):
            return []
        return [
            FileInfo(
                str(s.getPath().toString()),
                int(s.getLen()),
                bool(s.isDirectory()),
                int(s.getModificationTime()),
            )
            for s in self.fs.listStatus(path)
        ]

    def files(self, p: str) -> list[FileInfo]:
        """Every file under p, recursively."""
        path = self._Path(p)
        if not self.fs.exists(path):
            return []
        out: list[FileInfo] = []
        it = self.fs.listFiles(path, True)
        while it.hasNext():
            s = it.next()
            out.append(
                FileInfo(str(s.getPath().toString()), int(s.getLen()), False, int(s.getModificationTime()))
            )
        return out

    def write_text(self, p: str, text: str) -> None:
        """Write (overwrite) a small text file: written to a temporary name, then renamed into place."""
        path = self._Path(p)
        tmp = self._Path(p + ".tmp")
        out = self.fs.create(tmp, True)
        try:
            out.write(bytearray(text.encode("utf-8")))
        finally:
            out.close()
        if self.fs.exists(path):
            self.fs.delete(path, False)
        if not self.fs.rename(tmp, path):
            raise OSError(f"cannot rename {tmp} to {p}")

    def read_text(self, p: str) -> str | None:
        path = self._Path(p)
        if not self.fs.exists(path):
            return None
        stream = self.fs.open(path)
        try:
            reader = self._jvm.java.io.BufferedReader(self._jvm.java.io.InputStreamReader(stream, "UTF-8"))
            lines = []
            while True:
                line = reader.readLine()
                if line is None:
                    break
                lines.append(str(line))
            return "\n".join(lines)
        finally:
            stream.close()

    def copy(self, src: str, dst_fs: HadoopFS, dst: str) -> None:
        """Byte copy of one file between (possibly different) file systems."""
        util = self._jvm.org.apache.hadoop.fs.FileUtil
        ok = util.copy(self.fs, self._Path(src), dst_fs.fs, dst_fs._Path(dst), False, True, self._conf)
        if not ok:
            raise OSError(f"copy {src} -> {dst} failed")
