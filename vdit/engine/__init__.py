"""The training engine behind `vdit train` (see docs/training.md).

    recipes      RUN_PRESETS: the supplementary's schedules as RunConfigs; run_preset(name)
    trainer      Trainer(run_config, run_dir, resume=None).fit(): the loop (DDP, AMP, accumulation)
    optim        AdamW parameter groups by component, MultiStepLR
    checkpoint   atomic, pickle-free checkpoints; open_checkpoint / save_checkpoint; load_init_weights
    sampler      EpochBatchSampler: DistributedSampler batches, resumable mid-epoch
    datasets     build_train_dataset(DataConfig, num_frames, seed)
    distributed  torchrun (env://) process group helpers
    run_log      RunLogger: metrics.jsonl, optional TensorBoard, messages

Modules are imported explicitly (nothing here), so `import vdit.engine` stays light.
"""
