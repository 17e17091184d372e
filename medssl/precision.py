"""The training precision both pre-training and fine-tuning default to."""
import torch


def default_precision() -> str:
    """bf16 mixed precision on a GPU that has bf16, 32-bit elsewhere."""
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return "bf16-mixed" if bf16 else "32-true"
