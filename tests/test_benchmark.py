"""The speed benchmark end to end on a few generated images: every way runs
and the table it prints holds what docs/performance.md reports."""
import os
import subprocess
import sys

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_benchmark_measures_all_three_ways(synthetic_folder):
    result = subprocess.run(
        [sys.executable, "-m", "tools.benchmark", "--dataset-path", synthetic_folder,
         "--limit", "40", "--processes", "2", "--micro-batch", "8"],
        capture_output=True, text=True, cwd=PROJECT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {line.split()[0] + (" x2" if " x2 proc" in line else ""): line.split()
            for line in result.stdout.splitlines()
            if line.startswith(("tutorial ", "pipeline "))}
    assert set(rows) == {"tutorial", "pipeline", "pipeline x2"}
    for row in rows.values():
        epoch_seconds, peak_share = float(row[-6]), row[-1]
        assert epoch_seconds > 0 and peak_share.endswith("%")
    assert "speed-up of pipeline x1" in result.stdout
    assert "speed-up of pipeline x2" in result.stdout
    assert "in pieces of 8" in result.stdout
    assert "precision auto: " in result.stdout
