"""Fine-tuning with identification and removal of spurious correlations."""

__all__ = []
