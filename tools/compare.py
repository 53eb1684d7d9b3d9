"""Whether one trained model segments better than another, image by image.

    python predict.py --base-output runs/a --evaluate --scores-out runs/a/scores.csv
    python predict.py --base-output runs/b --evaluate --scores-out runs/b/scores.csv
    python -m tools.compare runs/a/scores.csv runs/b/scores.csv

Both models must have been evaluated on the same images (the same split seed).
Comparing them image by image removes the variation that comes from which
images are easy, which dominates the standard error of each mean on its own:
a difference is only worth acting on when it is several standard errors of the
paired difference away from zero.
"""
import argparse
import csv
import math
import sys


def read_scores(path):
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return {row["id"]: float(row["score"]) for row in csv.DictReader(handle)}
    except (OSError, KeyError, ValueError) as error:
        raise ValueError(f"{path} is not a scores file written by `predict.py --evaluate "
                         f"--scores-out` ({error})") from None


def paired_difference(first, second):
    """Mean of second - first over the images, its standard error, and how
    many images got better and worse. Both map image id -> score."""
    if set(first) != set(second):
        raise ValueError(f"the two files score different images ({len(set(first) ^ set(second))}"
                         f" appear in one only): evaluate both models on the same split")
    if len(first) < 2:
        raise ValueError("a comparison needs at least two images")
    differences = [second[name] - first[name] for name in first]
    mean = sum(differences) / len(differences)
    variance = sum((d - mean) ** 2 for d in differences) / (len(differences) - 1)
    return {"mean": mean, "standard_error": math.sqrt(variance / len(differences)),
            "better": sum(d > 0 for d in differences),
            "worse": sum(d < 0 for d in differences)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", help="scores.csv of the reference model")
    parser.add_argument("second", help="scores.csv of the model compared with it")
    args = parser.parse_args(argv)
    try:
        first, second = read_scores(args.first), read_scores(args.second)
        result = paired_difference(first, second)
    except ValueError as error:
        sys.exit(f"[ERROR] {error}")
    n = len(first)
    print(f"{n} images: competition score {sum(first.values()) / n:.4f} -> "
          f"{sum(second.values()) / n:.4f}, difference {result['mean']:+.4f} "
          f"+- {result['standard_error']:.4f} (standard error of the paired difference); "
          f"better on {result['better']} images, worse on {result['worse']}")


if __name__ == "__main__":
    main()
