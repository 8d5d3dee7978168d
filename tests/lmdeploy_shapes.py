"""Classes shaped like LMDeploy 0.18's, for tests of the launcher (lmdeploy itself needs a GPU stack).

Used in-process and, through a stand-in `lmdeploy` package, by the launcher run as a child process.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch


class OldStyleVisionModel:
    """Like Qwen2VLModel: `preprocess(messages)` appends the processor's float32 output."""

    def preprocess(self, messages):
        patches = torch.randn(4, 1176, generator=torch.Generator().manual_seed(0))
        return [*messages, {"role": "preprocess", "content": [{"pixel_values": patches,
                                                               "image_grid_thw": torch.tensor([[1, 2, 2]])}]}]


def image_encoder_class(new_style_preprocess: bool = False) -> type:
    """A new class like ImageEncoder each call: the launcher patches the class it is given."""

    class ImageEncoder:
        def __init__(self, model_path, backend, vision_config=None, backend_config=None, trust_remote_code=False):
            self.model = OldStyleVisionModel()
            self.mm_feature_dtype = torch.bfloat16
            self.executor = ThreadPoolExecutor(max_workers=1)
            self._uses_new_preprocess = new_style_preprocess

    return ImageEncoder
