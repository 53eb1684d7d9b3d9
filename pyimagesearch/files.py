"""Writing files so that a crash never leaves a truncated one behind."""
import contextlib
import csv
import io
import os
import tempfile


class OutputError(OSError):
    """An output file or folder cannot be written; the message says which."""


def ensure_folder(folder):
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create the output folder {folder}: "
                          f"{error.strerror}; choose another with --base-output") from None


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    The rename is atomic on one file system, so readers see either the old
    file or the complete new one. The temporary name keeps the extension,
    because some writers (matplotlib, OpenCV) choose the format from it.
    """
    folder = os.path.dirname(os.path.abspath(path))
    ensure_folder(folder)
    stem, extension = os.path.splitext(os.path.basename(path))
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{extension}",
                                             dir=folder)
    except OSError as error:
        raise OutputError(f"cannot write in {folder}: {error.strerror}; "
                          f"choose another folder with --base-output") from None
    os.close(handle)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


def write_text(path, text):
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)


def write_csv(path, rows):
    """Write a list of dicts with the same keys as CSV with a header."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())
