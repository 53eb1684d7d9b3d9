"""Run a Python program in this process and write its peak resident memory.

    python -m tools.peak_memory REPORT_FILE (-m MODULE | -c CODE | SCRIPT) [ARGS...]

REPORT_FILE receives the peak in KiB when the program ends, before the
interpreter shuts down: importing torch alone peaks at about 500 MB, and its
shutdown briefly adds a hundred more, which would say more about torch's exit
than about the program. Processes the program started and waited for (such as
torchrun's workers) count with their own peak, exits included.
"""
import atexit
import resource
import runpy
import sys


def own_peak_kib():
    # Linux's VmHWM starts afresh when a process execs; ru_maxrss keeps the
    # peak of the process it was forked from, a large one when that was the
    # benchmark itself
    try:
        with open("/proc/self/status", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _write_peak(report):
    own = own_peak_kib()
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open(report, "w", encoding="utf-8") as handle:
        handle.write(str(max(own, children)))


def main():
    report, mode, *rest = sys.argv[1:]
    atexit.register(_write_peak, report)
    if mode == "-m":
        sys.argv = rest
        runpy.run_module(rest[0], run_name="__main__", alter_sys=True)
    elif mode == "-c":
        sys.argv = ["-c", *rest[1:]]
        exec(compile(rest[0], "<string>", "exec"), {"__name__": "__main__"})
    else:
        sys.argv = [mode, *rest]
        runpy.run_path(mode, run_name="__main__")


if __name__ == "__main__":
    main()
