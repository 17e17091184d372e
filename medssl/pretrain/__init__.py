"""Self-supervised pre-training: the store's data module and views, the methods, their
callbacks, resumable checkpoints and the LightningCLI the Pre-Training scripts run."""
