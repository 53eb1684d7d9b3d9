"""Command-line flags shared by the tests that run train.py."""

# a 2-level network on 32x32 inputs: each epoch of the synthetic data takes a moment
TINY = ["--input-image-width", "32", "--input-image-height", "32", "--batch-size", "16",
        "--num-levels", "2"]
