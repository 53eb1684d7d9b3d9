"""Segment salt with a trained U-Net.

    python predict.py                                  # plot NUM_PREDICTIONS test images
    python predict.py --input DIR --masks-out OUT      # a 0/255 PNG mask per image in DIR
    python predict.py --input a.png --masks-out OUT    # the same for one image
    python predict.py --input DIR --submission FILE    # a Kaggle submission (id,rle_mask)
    python predict.py --evaluate                       # IoU, Dice, score on the test split
    python predict.py --model-path DIR ...             # the models in DIR, averaged
"""
import os
import sys

import cv2
import numpy as np
import torch
from tqdm import tqdm

from pyimagesearch.checkpoint import CheckpointError, load_for_prediction
from pyimagesearch.cli import build_parser, settings_from_args
from pyimagesearch.dataset import (IMAGE_KINDS, DataError, MaskFormat, by_stem, few,
                                   list_image_files, list_other_files, read_mask)
from pyimagesearch.engine import autocast_dtype, prepare_model, reuse_freed_memory
from pyimagesearch.export import (INPUT_NAME, OUTPUT_NAME, ExportError, export_onnx,
                                  onnx_difference)
from pyimagesearch.files import OutputError, atomic_path, ensure_folder, write_csv
from pyimagesearch.inference import evaluate_classes, evaluate_pairs, read_batch, segment_files
from pyimagesearch.metrics import (COVERAGE_KINDS, competition_score_per_image, coverage_kind,
                                   summarize)
from pyimagesearch.postprocess import PredictionRules
from pyimagesearch.plots import (class_colours, colour_mask, display_available, plot_classes,
                                 plot_gallery, plot_prediction, plot_score_by_coverage,
                                 show_open_figures)
from pyimagesearch.rle import encode
from pyimagesearch.split import read_test_paths


def _image_id(path):
    return os.path.splitext(os.path.basename(path))[0]


def _score(predicted, true_mask):
    return competition_score_per_image(torch.from_numpy(predicted)[None],
                                       torch.from_numpy(true_mask)[None]).item()


def plot_test_predictions(settings, model, arguments, device, rules, options):
    pairs = read_test_paths(settings.TEST_PATHS)
    rng = np.random.default_rng(settings.SEED)
    chosen = rng.choice(len(pairs), size=min(settings.NUM_PREDICTIONS, len(pairs)), replace=False)
    images = [pairs[i][0] for i in chosen]
    show = display_available()
    predictions = segment_files(model, arguments, images, device, rules, **options)
    mask_format = MaskFormat.from_settings(settings)
    colours = class_colours(mask_format.num_classes, mask_format.palette)
    for (image_path, mask_path), segmented in zip((pairs[i] for i in chosen), predictions):
        name = _image_id(image_path)
        target = os.path.join(settings.PREDICTIONS_PATH, f"{name}.png")
        true_mask = read_mask(mask_path, mask_format)
        if mask_format.num_classes > 1:
            plot_classes(segmented.image.squeeze(), true_mask, segmented.mask, colours, target,
                         name, keep_open=show)
        else:
            plot_prediction(segmented.image.squeeze(), true_mask, segmented.mask,
                            segmented.probability, target,
                            f"{name}: score {_score(segmented.mask, true_mask):.2f}",
                            keep_open=show)
        print(f"[INFO] saved {target}")
    if show:
        show_open_figures()


def plot_errors(settings, model, arguments, device, rules, options, pairs, columns, worst):
    """The ``worst`` lowest-scored images with their outlines, and every
    image's score by how much of it is salt, as two pictures."""
    order = sorted(range(len(pairs)), key=lambda i: (columns["score"][i], columns["iou"][i]))
    chosen = order[:worst]
    predictions = segment_files(model, arguments, [pairs[i][0] for i in chosen], device, rules,
                                **options)
    panels = [(segmented.image.squeeze(), read_mask(pairs[i][1]), segmented.mask,
               f"{_image_id(pairs[i][0])}: {columns['score'][i]:.2f}")
              for i, segmented in zip(chosen, predictions)]
    plot_gallery(panels, settings.WORST_PATH)
    kinds = [coverage_kind(salt / pixels) for salt, pixels
             in zip(columns["salt_pixels"], columns["image_pixels"])]
    plot_score_by_coverage(kinds, columns["score"], settings.COVERAGE_PLOT_PATH,
                           list(COVERAGE_KINDS))
    print(f"[INFO] saved the {len(panels)} worst-scored images to {settings.WORST_PATH} and "
          f"the score by salt coverage to {settings.COVERAGE_PLOT_PATH}")


def evaluate_test_split(settings, model, arguments, device, rules, options, scores_out=None,
                        worst=16):
    """Metrics of the model on the test split, at each image's original size,
    and pictures of where it fails; with ``scores_out`` also each image's
    metrics, as CSV."""
    pairs = read_test_paths(settings.TEST_PATHS)
    if settings.NUM_CLASSES > 1:
        return evaluate_classes_split(settings, model, arguments, device, rules, options, pairs)
    columns = evaluate_pairs(model, arguments, pairs, device, rules, **options)
    summary = summarize(columns)
    means = summary["means"]
    print(f"[INFO] {summary['count']} test images at their original size: mean IoU "
          f"{means['iou']:.4f}  mean Dice {means['dice']:.4f}  competition score "
          f"{means['score']:.4f} (+- {summary['standard_error']:.4f} standard error over images)")
    print("[INFO] where the score falls short of 1: " + "; ".join(
        f"{kind}: {count} images scoring {mean:.3f} (-{share:.4f})"
        for kind, (count, mean, share) in summary["shortfall"].items() if count))
    if scores_out:
        ids = [_image_id(image) for image, _ in pairs]
        write_csv(scores_out, [{"id": name, **{column: values[i] for column, values
                                               in columns.items()}}
                               for i, name in enumerate(ids)])
        print(f"[INFO] wrote each image's metrics to {scores_out}")
    if worst:
        plot_errors(settings, model, arguments, device, rules, options, pairs, columns, worst)
    return means


def evaluate_classes_split(settings, model, arguments, device, rules, options, pairs):
    """IoU and Dice of each class over the test split, and their means."""
    totals = evaluate_classes(model, arguments, pairs, device, rules,
                              MaskFormat.from_settings(settings), **options)
    means = totals.means()
    print(f"[INFO] {len(pairs)} test images at their original size: mean IoU "
          f"{means['iou']:.4f}  mean Dice {means['dice']:.4f} (over the classes present)")
    for index, (iou, dice) in enumerate(zip(means["iou_per_class"], means["dice_per_class"])):
        print(f"[INFO] class {index}: IoU {iou:.4f}  Dice {dice:.4f}")
    return means


def input_images(input_path):
    """(folder, image paths): one image file, or the images of a folder, each
    with a name of its own, since their masks and submission rows are named
    after them."""
    if os.path.isfile(input_path):
        return os.path.dirname(os.path.abspath(input_path)), [input_path]
    if not os.path.isdir(input_path):
        raise DataError(f"the input {input_path} does not exist (give an image file or a "
                        f"folder of images)")
    paths = list_image_files(input_path)
    if not paths:
        raise DataError(f"no images ({IMAGE_KINDS}) in {input_path}")
    by_stem(paths, input_path)
    others = list_other_files(input_path)
    if others:
        print(f"[INFO] left out {len(others)} file(s) that are not images ({IMAGE_KINDS}): "
              f"{few([os.path.relpath(path, input_path) for path in others])}")
    return input_path, paths


def mask_targets(paths, input_folder, masks_folder):
    """Where each image's mask goes; never over an input image."""
    targets = [os.path.join(masks_folder, os.path.splitext(os.path.relpath(path, input_folder))[0]
                            + ".png") for path in paths]
    inputs = {os.path.realpath(path) for path in paths}
    overwritten = [target for target in targets if os.path.realpath(target) in inputs]
    if overwritten:
        raise DataError(f"--masks-out {masks_folder} would write masks over "
                        f"{len(overwritten)} input image(s), e.g. {overwritten[0]}; "
                        f"choose another folder for the masks")
    return targets


def _write_png(path, pixels):
    with atomic_path(path) as temporary:
        if not cv2.imwrite(temporary, pixels):
            raise OutputError(f"cannot write the mask {path}")


def predict_input(settings, model, arguments, device, rules, options, input_path,
                  masks_folder, submission):
    """Segment the image file ``input_path``, or every image in that folder:
    a PNG mask per image into ``masks_folder`` (0/255 for one class, class
    indices for several) and/or one run-length line per image into
    ``submission``."""
    classes = arguments["nbClasses"]
    if submission and classes > 1:
        raise DataError(f"a competition submission holds one class; this model has {classes}")
    input_folder, paths = input_images(input_path)
    targets = None
    if masks_folder:
        targets = mask_targets(paths, input_folder, masks_folder)
        ensure_folder(masks_folder)
    colours = class_colours(classes, MaskFormat.from_settings(settings).palette)
    rows = []
    predictions = segment_files(model, arguments, paths, device, rules, **options)
    for index, (path, _, mask, _) in enumerate(tqdm(predictions, total=len(paths),
                                                     desc="predicting", unit="image")):
        name = os.path.splitext(os.path.relpath(path, input_folder))[0]
        if targets and classes > 1:
            _write_png(targets[index], mask)
            _write_png(os.path.join(masks_folder, "preview", name + ".png"),
                       cv2.cvtColor(colour_mask(mask, colours), cv2.COLOR_RGB2BGR))
        elif targets:
            _write_png(targets[index], mask * 255)
        rows.append({"id": name, "rle_mask": encode(mask)})
    if masks_folder:
        kind = (f"class indices 0 to {classes - 1}, coloured previews in preview/"
                if classes > 1 else "0 or 255")
        print(f"[INFO] wrote {len(paths)} masks ({kind}, each at its image's size) "
              f"to {masks_folder}")
    if submission:
        write_csv(submission, rows)
        print(f"[INFO] wrote the run-length codes of {len(rows)} masks to {submission}")


def export(settings, model, arguments, path):
    """Write the model as ONNX and compare it with PyTorch on validation images."""
    export_onnx(model, arguments, path)
    classes = arguments["nbClasses"]
    rule = ("salt where the logit > log(threshold / (1 - threshold))" if classes == 1
            else "each pixel's class is that of its largest logit")
    print(f"[INFO] wrote {path}: input '{INPUT_NAME}' (N, {arguments['encChannels'][0]}, "
          f"{arguments['outSize'][0]}, {arguments['outSize'][1]}) in [0, 1], output "
          f"'{OUTPUT_NAME}' (N, {classes}, same size); {rule}")
    pairs = read_test_paths(settings.TEST_PATHS)[:16]
    difference = onnx_difference(path, model, read_batch([image for image, _ in pairs],
                                                         arguments)[1])
    if difference is None:
        print("[INFO] install onnxruntime to check the file against PyTorch")
    else:
        print(f"[INFO] on {len(pairs)} validation images the ONNX logits differ from "
              f"PyTorch's by at most {difference:.2e}")


def build_predict_parser():
    """The shared settings, and what predict.py can do with a trained model."""
    parser = build_parser(__doc__.splitlines()[0])
    parser.add_argument("--input", metavar="PATH",
                        help="predict one image file, or every image in a folder")
    parser.add_argument("--masks-out", metavar="DIR",
                        help="with --input: write one PNG mask per image here")
    parser.add_argument("--submission", metavar="FILE.csv",
                        help="with --input: write a competition submission (id,rle_mask; "
                             "run-length code, column-major, 1-based)")
    parser.add_argument("--evaluate", action="store_true",
                        help="print IoU, Dice and competition score on the test split "
                             "(TEST_PATHS), at the images' original size, and where the "
                             "score falls short")
    parser.add_argument("--export-onnx", metavar="FILE.onnx",
                        help="write the model as ONNX (needs: pip install onnx onnxscript "
                             "onnxruntime) and compare it with PyTorch on validation images")
    parser.add_argument("--worst", metavar="N", type=int, default=16,
                        help="with --evaluate: picture the N lowest-scored images (0: none)")
    parser.add_argument("--scores-out", metavar="FILE.csv",
                        help="with --evaluate: write each image's IoU, Dice, score and "
                             "salt areas (true and predicted, in pixels), for "
                             "`python -m tools.compare`")
    return parser


def main(argv=None):
    parser = build_predict_parser()
    args = parser.parse_args(argv)
    settings = settings_from_args(args, parser)
    if bool(args.input) != bool(args.masks_out or args.submission):
        parser.error("--input goes with --masks-out and/or --submission")
    if args.worst < 0:
        parser.error("--worst takes a number of images >= 0")
    if args.scores_out and not args.evaluate:
        parser.error("--scores-out goes with --evaluate")
    device = torch.device(settings.DEVICE)
    reuse_freed_memory()
    try:
        model, arguments, metadata = load_for_prediction(settings.MODEL_PATH, device)
        model = prepare_model(model, device, settings.CHANNELS_LAST)
        # the model decides the classes; its training run, their colours
        settings.NUM_CLASSES = arguments["nbClasses"]
        if "CLASS_COLORS" not in settings.GIVEN:
            settings.CLASS_COLORS = metadata.get("settings", {}).get("CLASS_COLORS", "")
        if settings.NUM_CLASSES > 1 and args.scores_out:
            raise DataError("--scores-out writes the competition score per image, which is "
                            "for one class; --evaluate prints each class's IoU and Dice")
        rules = PredictionRules.for_model(settings, metadata)
        decision = (f"threshold {rules.threshold}, minimum salt area {rules.min_area} px"
                    if settings.NUM_CLASSES == 1 else "each pixel takes its likeliest class")
        print(f"[INFO] {decision}, test-time flips {'on' if rules.tta else 'off'}")
        options = {"batch_size": settings.EVAL_BATCH_SIZE, "channels_last": settings.CHANNELS_LAST,
                   "dtype": autocast_dtype(device, settings.PRECISION)}
        if args.export_onnx:
            export(settings, model, arguments, args.export_onnx)
        elif args.evaluate:
            evaluate_test_split(settings, model, arguments, device, rules, options,
                                args.scores_out, args.worst)
        elif args.input:
            predict_input(settings, model, arguments, device, rules, options, args.input,
                          args.masks_out, args.submission)
        else:
            plot_test_predictions(settings, model, arguments, device, rules, options)
    except (DataError, OutputError, CheckpointError, ExportError) as error:
        sys.exit(f"[ERROR] {error}")


if __name__ == "__main__":
    main()
