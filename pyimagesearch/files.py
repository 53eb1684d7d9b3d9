"""Writing files so that a crash never leaves a truncated one behind."""
import contextlib
import csv
import io
import os
import secrets


class OutputError(OSError):
    """An output file or folder cannot be written; the message says which."""


def ensure_folder(folder):
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create the output folder {folder}: "
                          f"{error.strerror}; choose another with --base-output") from None


def _temporary_name(folder, stem, extension):
    # with the process id in it, no name that this process removes can be a
    # file of another live process
    return os.path.join(folder, f".{stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp{extension}")


def _create(temporary):
    """Create ``temporary`` empty, as ``open()`` would create it (mode 0666
    less the umask, unlike mkstemp's private 0600); False if it exists."""
    try:
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        return True
    except FileExistsError:
        return False
    except OSError as error:
        raise OutputError(f"cannot write in {os.path.dirname(temporary)}: {error.strerror}; "
                          f"choose another folder with --base-output") from None


def _flush_to_disk(path):
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(path, durable=False):
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    The rename is atomic on one file system, so readers see either the old
    file or the complete new one. The temporary name keeps the extension,
    because some writers (matplotlib, OpenCV) choose the format from it.
    ``durable`` (for models and checkpoints) flushes the content to the disk
    before the rename, so that a power cut cannot leave an empty file behind
    the new name.
    """
    folder = os.path.dirname(os.path.abspath(path))
    ensure_folder(folder)
    stem, extension = os.path.splitext(os.path.basename(path))
    temporary = None
    try:
        # named before it is created: an interrupt (Ctrl-C) that lands just
        # after the creation still finds the file to remove
        temporary = _temporary_name(folder, stem, extension)
        while not _create(temporary):
            temporary = _temporary_name(folder, stem, extension)
        yield temporary
        if durable:
            _flush_to_disk(temporary)
        os.replace(temporary, path)
    except BaseException:
        if temporary is not None:
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
