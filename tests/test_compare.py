"""The paired comparison of two models' per-image scores, against values worked by hand."""
import pytest

from tools.compare import main, paired_difference


def test_paired_difference_by_hand():
    first = {"a": 0.5, "b": 0.9, "c": 0.2}
    second = {"a": 0.6, "b": 0.8, "c": 0.5}
    # differences 0.1, -0.1, 0.3: mean 0.1, deviations 0, -0.2, 0.2,
    # sample variance 0.08 / 2 = 0.04, standard error sqrt(0.04 / 3)
    result = paired_difference(first, second)
    assert result["mean"] == pytest.approx(0.1)
    assert result["standard_error"] == pytest.approx((0.04 / 3) ** 0.5)
    assert (result["better"], result["worse"]) == (2, 1)


def test_images_that_differ_between_the_files_are_refused():
    with pytest.raises(ValueError, match="same split"):
        paired_difference({"a": 1.0, "b": 0.0}, {"a": 1.0, "c": 0.0})


def test_the_command_reads_score_files_and_reports(tmp_path, capsys):
    for name, scores in (("a.csv", "1,0.5\n2,0.5\n"), ("b.csv", "2,1.0\n1,0.5\n")):
        (tmp_path / name).write_text("id,iou,dice,score\n" + "".join(
            f"{line.split(',')[0]},0,0,{line.split(',')[1]}\n" for line in scores.split()))
    main([str(tmp_path / "a.csv"), str(tmp_path / "b.csv")])
    out = capsys.readouterr().out
    assert "0.5000 -> 0.7500" in out and "+0.2500 +- 0.2500" in out
    assert "better on 1 images, worse on 0" in out


def test_a_file_that_is_not_a_scores_file_stops_with_its_name(tmp_path):
    wrong = tmp_path / "history.csv"
    wrong.write_text("epoch,train_loss\n1,0.5\n")
    with pytest.raises(SystemExit, match="history.csv is not a scores file"):
        main([str(wrong), str(wrong)])
