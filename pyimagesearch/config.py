"""Every setting of the pipeline, in one plain module.

Edit a value here to change it for good, or override it for one run with a flag
of the same name in lower-kebab case: ``python train.py --num-epochs 5``.
Paths that lie under another path constant follow it when only that one is
overridden: ``--base-output runs/a`` moves the model, plot and test-paths files.
"""
import os

import torch

# Relative paths would depend on where the scripts are started from; anchoring
# them to the project folder makes `python ../train.py` behave like `python train.py`.
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# --- data -----------------------------------------------------------------
DATASET_PATH = os.path.join(PROJECT_ROOT, "dataset", "train")
IMAGE_DATASET_PATH = os.path.join(DATASET_PATH, "images")
MASK_DATASET_PATH = os.path.join(DATASET_PATH, "masks")
# share of the data held out for validation; the split is seeded by SEED
TEST_SPLIT = 0.15

# an unreadable image or mask (truncated, corrupt, not binary, of another
# size than its partner) stops the run with its name; True skips such pairs
# with a warning and a count instead
SKIP_BAD_FILES = False

# --- device ---------------------------------------------------------------
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# on a GPU, keep the decoded dataset (uint8) in the GPU's memory, where each
# batch is cut and augmented without a copy; False keeps it in main memory,
# for datasets larger than the GPU's memory
DATA_ON_DEVICE = True
# page-locked batches copy to a GPU faster (when the data is in main memory)
PIN_MEMORY = DEVICE.startswith("cuda")

# --- model ----------------------------------------------------------------
# 1 reads every image as grayscale (TGS images are RGB with identical
# channels), 3 as RGB
NUM_CHANNELS = 1
# 1: salt or not (any nonzero mask pixel is salt). Above 1: the number of
# classes, background (0) included; mask pixels hold class indices
NUM_CLASSES = 1
# with NUM_CLASSES above 1, masks drawn in colours: one "R,G,B" per class,
# background first, joined by ";" (e.g. "0,0,0;255,0,0;0,0,255"); empty reads
# mask pixels as class indices
CLASS_COLORS = ""
# number of encoder blocks; the width doubles at each level from BASE_FILTERS
NUM_LEVELS = 3
BASE_FILTERS = 16
# above 0, the width of the deepest level instead of the doubled one. Its maps
# are the smallest (7x7 for a 101x101 tile at 5 levels), so width there adds
# weights at little cost in time
BOTTLENECK_FILTERS = 0
# each decoder level's width as a share of the encoder's at that level: the
# decoder joins two maps per level and does most of the arithmetic, so a
# narrower one frees time for more epochs or a wider encoder
DECODER_WIDTH = 1.0
# in training, the chance that each decoder channel the last convolution sees
# is zeroed (spatial dropout; 0 is off, the tutorial's network has none)
DROPOUT = 0.0
# "aligned": padded convolutions, output pixel i predicts input pixel i.
# "tutorial": the tutorial's unpadded network, whose output covers only the
# centre of the input and is stretched back to full size.
MODEL_VARIANT = "aligned"
# batch normalisation after every convolution (the tutorial has none)
BATCH_NORM = False
# each block's input added back to its output (aligned variant only)
RESIDUAL_BLOCKS = False
# channel and pixel attention (scSE) after each decoder block
DECODER_ATTENTION = False
# the last convolution sees every decoder level's output, not the finest only
HYPERCOLUMN = False
# one class only: a pixel's probability is the image's chance of holding the
# class (from the deepest level) times the pixel's own
IMAGE_GATE = False
# with IMAGE_GATE: the image's chance of salt also learns from a loss of its
# own, and the pixels' from the images that hold salt only (losses.py)
DEEP_SUPERVISION = False

# --- training -------------------------------------------------------------
INIT_LR = 0.001
# "constant" (the tutorial), or "cosine": decay from INIT_LR to 0 over the run,
# a step per batch
LR_SCHEDULE = "constant"
# the rate rises linearly to INIT_LR over this many epochs first (per batch),
# a guard against large first steps before Adam's statistics have settled,
# common with large batches on GPUs
WARMUP_EPOCHS = 0
# 0 trains with Adam (the tutorial); above 0 with AdamW and this decoupled decay
WEIGHT_DECAY = 0.0
# above 0, a step whose gradients (all together) have a larger norm is scaled
# down to this norm (torch.nn.utils.clip_grad_norm_): a guard against the
# rare huge steps that throw a training loss back up. 0 keeps the tutorial's
# unclipped steps
GRAD_CLIP = 0.0
# "bce" (the tutorial), "dice", "lovasz", "lovasz_elu", "lovasz_symmetric"
# (losses.py), or a sum such as "bce+lovasz"
LOSS = "bce"
# the last FINAL_LOSS_SHARE of the epochs (0: none) train with FINAL_LOSS
# instead, e.g. the Lovasz loss alone to polish each image's IoU once the
# salt is found; validation keeps scoring LOSS
FINAL_LOSS = "lovasz"
FINAL_LOSS_SHARE = 0.0
# random flips, zooms and brightness/contrast changes of the training samples
AUGMENT = False
NUM_EPOCHS = 40
# above 0, minutes the whole run may take (reading, training, tuning): after
# epochs 3, 10, 25, 50 and 100 the run times its latest epochs and trains as
# many of NUM_EPOCHS as fit, the learning-rate schedule spanning those. 0
# trains NUM_EPOCHS always
TIME_BUDGET = 0.0
# above 0, the weights validated and saved are an exponential moving average
# of the training weights, updated after every batch with this decay (0.999
# weighs roughly the last 1,000 batches); 0 saves the weights as trained
EMA_DECAY = 0.0
# above 0, the last SWA_SHARE of the epochs train at the constant rate SWA_LR,
# to which the cosine falls before them, and the weights (and batch-norm
# statistics) after each of those epochs are averaged equally (stochastic
# weight averaging): from the first of them on, the average is what is
# validated and saved. Instead of EMA_DECAY
SWA_SHARE = 0.0
SWA_LR = 0.0005
# the global batch: under torchrun it is split evenly over the processes
BATCH_SIZE = 64
SEED = 42

# images and masks are resized to this before entering the network
INPUT_IMAGE_WIDTH = 128
INPUT_IMAGE_HEIGHT = 128

# a pixel is salt when its predicted probability exceeds this
THRESHOLD = 0.5
# a predicted mask with fewer salt pixels than this is taken for noise and
# emptied: a false pixel on an image without salt costs the whole image
MIN_SALT_AREA = 0
# after training, choose THRESHOLD and MIN_SALT_AREA on the validation images
# and store them with the best model, where predict.py finds them
TUNE_THRESHOLD = False
# test-time augmentation: average the prediction of each image with that of
# its mirror image (twice the prediction cost)
TTA = False

# --- speed ----------------------------------------------------------------
# images per forward pass in validation and prediction: on a CPU small batches
# stay in its caches and run faster (docs/performance.md); a GPU wants many
EVAL_BATCH_SIZE = 256 if DEVICE.startswith("cuda") else 16
# each batch goes through the network in pieces of this many images whose
# gradients add up to the batch's (gradient accumulation): the memory of a
# small batch with the step of a large one, at the same speed on a CPU
# (docs/performance.md). Exact for the "bce" and "lovasz" losses without batch norm;
# with batch norm each piece has its own statistics. 0 passes whole batches,
# which a GPU has the memory for
MICRO_BATCH_SIZE = 0 if DEVICE.startswith("cuda") else 16
# NHWC memory layout: about twice the convolution speed on CPUs, and uses
# the tensor cores' preferred layout on CUDA
CHANNELS_LAST = True
# "fp32", or "bf16" / "fp16" autocast; "auto" picks bf16 where the device
# computes it in hardware (most GPUs; CPUs with AVX512_BF16 or AMX), else fp32
PRECISION = "auto"
# DataLoader worker processes; the dataset is decoded once into memory, so
# workers only add processes competing with the compute threads
NUM_WORKERS = 0

# under torchrun, batch normalisation layers (where the model has any) use
# the statistics of the global batch rather than each process's share
SYNC_BATCHNORM = True

# --- output ---------------------------------------------------------------
BASE_OUTPUT = os.path.join(PROJECT_ROOT, "output")
# the model of the epoch with the best validation competition score; for
# predict.py also a folder, whose model files' probabilities are averaged
MODEL_PATH = os.path.join(BASE_OUTPUT, "unet_tgs_salt.pth")
# the model after the last epoch
LAST_MODEL_PATH = os.path.join(BASE_OUTPUT, "unet_tgs_salt_last.pth")
# everything needed to continue an interrupted run with `train.py --resume`,
# written after every epoch
CHECKPOINT_PATH = os.path.join(BASE_OUTPUT, "checkpoint.pth")
PLOT_PATH = os.path.join(BASE_OUTPUT, "plot.png")
HISTORY_PATH = os.path.join(BASE_OUTPUT, "history.csv")
TEST_PATHS = os.path.join(BASE_OUTPUT, "test_paths.txt")
PREDICTIONS_PATH = os.path.join(BASE_OUTPUT, "predictions")
# `predict.py --evaluate` pictures its lowest-scored images, and each image's
# score by how much of it is salt
WORST_PATH = os.path.join(BASE_OUTPUT, "worst.png")
COVERAGE_PLOT_PATH = os.path.join(BASE_OUTPUT, "score_by_coverage.png")
# where `python train.py` writes its built-in data when DATASET_PATH is empty
SYNTHETIC_DATASET_PATH = os.path.join(BASE_OUTPUT, "synthetic")
# how many pairs it generates: enough for the tutorial's 40 epochs to learn
# the task, few enough to train within minutes on a laptop CPU
SYNTHETIC_NUM_IMAGES = 300
# how many test images predict.py plots
NUM_PREDICTIONS = 10
