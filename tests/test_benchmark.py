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
    assert "the network's own training step, data already on the device" in result.stdout


def test_whole_runs_are_timed_against_the_tutorials_code(synthetic_folder):
    result = subprocess.run(
        [sys.executable, "-m", "tools.benchmark", "--dataset-path", synthetic_folder,
         "--whole-process", "2", "--processes", "1"],
        capture_output=True, text=True, cwd=PROJECT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {line[:30].strip(): line[30:].split() for line in result.stdout.splitlines()
            if line.startswith(("tutorial's code", "train.py"))}
    assert set(rows) == {"tutorial's code", "train.py, tutorial network",
                         "train.py (aligned network)"}
    assert rows["tutorial's code"][3] == "1.00x"
    for seconds, last_epoch, forty_epochs, _, peak_mb, *_ in rows.values():
        # 38 more epochs at the last one's pace than the 2 measured (the
        # printed figures are rounded: 38 epochs of up to 0.05 s each)
        assert abs(float(forty_epochs) - float(seconds) - 38 * float(last_epoch)) <= 3
        assert float(peak_mb) > 0


def test_a_missing_dataset_is_named_without_a_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tools.benchmark", "--dataset-path", str(tmp_path / "nowhere")],
        capture_output=True, text=True, cwd=PROJECT, timeout=120)
    assert result.returncode == 2
    assert "nowhere" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
