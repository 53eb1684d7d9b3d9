"""A U-Net that segments salt in TGS seismic images, or any binary masks.

Data flows one way through the modules:
hardware -> config (+ cli, presets) -> dataset, split, augment, synthetic -> model ->
losses, engine (one epoch of training or evaluation), metrics ->
trainer, budget, optim (a run's epochs) -> checkpoint, files, plots;
inference and postprocess turn a saved model into masks, rle into a Kaggle
submission. train.py and predict.py call these; distributed adds torchrun.
"""
