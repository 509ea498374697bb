"""Backbones: 2D/video ResNets with torchvision names, insertion plans, local pretrained loading."""

from .insertion import NAMED_PLANS, POSITIONS, STAGES, InsertionPlan
from .pretrained import LoadReport, load_pretrained, read_state_dict
from .resnet import DEPTHS, STAGE_NAMES, VARIANTS, BasicBlock, Bottleneck, ResNet, run_video_module

__all__ = [
    "DEPTHS", "NAMED_PLANS", "POSITIONS", "STAGES", "STAGE_NAMES", "VARIANTS", "BasicBlock", "Bottleneck",
    "InsertionPlan", "LoadReport", "ResNet", "load_pretrained", "read_state_dict", "run_video_module",
]
