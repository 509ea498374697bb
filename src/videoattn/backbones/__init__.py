"""Backbones: the backbone protocol, 2D/video ResNets with torchvision names, insertion plans, local
pretrained loading."""

from .base import Site, VideoBackbone, run_video_module
from .bninception import BNInception
from .insertion import GENERIC_PLANS, InsertionPlan
from .pretrained import LoadReport, load_pretrained, read_state_dict
from .resnet import DEPTHS, STAGE_NAMES, VARIANTS, BasicBlock, Bottleneck, ResNet

__all__ = [
    "BNInception", "DEPTHS", "GENERIC_PLANS", "STAGE_NAMES", "VARIANTS", "BasicBlock", "Bottleneck", "InsertionPlan",
    "LoadReport", "ResNet", "Site", "VideoBackbone", "load_pretrained", "read_state_dict", "run_video_module",
]
