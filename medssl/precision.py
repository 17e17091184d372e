"""The training precision both pre-training and fine-tuning default to."""
import torch

NATIVE_BF16 = (8, 0)  # Ampere: A100, H100 and later compute bf16; older GPUs emulate it


def default_precision() -> str:
    """bf16 mixed precision where the GPU computes bf16 natively (compute capability 8.0 or
    more), 16-bit mixed precision with a gradient scaler on older GPUs, 32-bit on a CPU.
    (``torch.cuda.is_bf16_supported()`` also answers True on GPUs that only emulate bf16,
    slowly.)"""
    if not torch.cuda.is_available():
        return "32-true"
    return "bf16-mixed" if torch.cuda.get_device_capability() >= NATIVE_BF16 else "16-mixed"
