"""What this machine computes fast, read without starting any library.

Presets and the choice of precision both ask it, so it sits below both.
"""


def cpu_has_native_bf16():
    """Whether this CPU computes bf16 in hardware (AVX512_BF16 or AMX), as
    Linux's /proc/cpuinfo says; False where it says nothing."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "").split()
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))
