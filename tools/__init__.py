"""Developer tools, kept out of the pyimagesearch library; run from the project root:

    python -m tools.benchmark --dataset-path DIR   # speed against the tutorial's way
    python -m tools.compare A.csv B.csv            # two models' per-image scores, paired
"""
