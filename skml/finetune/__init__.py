"""Fine-tuning with identification and removal of spurious correlations (GRASP)."""

from ._callbacks import GRASPProjection
from ._grasp import GRASPFineTuner, GRASPRegressor
from ._identify import IdentificationWarning, identify_spurious_directions
from ._lora import LoRALinear, add_lora, lora_factors, lora_layers

__all__ = [
    "GRASPFineTuner",
    "GRASPProjection",
    "GRASPRegressor",
    "IdentificationWarning",
    "LoRALinear",
    "add_lora",
    "lora_factors",
    "identify_spurious_directions",
    "lora_layers",
]
