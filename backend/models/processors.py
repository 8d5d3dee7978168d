"""Processors that work without torchvision.

Qwen2-VL's and InternVL's processors carry a video processor, and transformers' video processors
need torchvision, which does not import beside every torch build (it does not beside the CPU
torch our CI uses). We never feed video, so subclasses that take no video processor serve
images through the family's own, unmodified logic.

transformers reads a processor's parts and saved settings off the parameter list of its
`__init__` (`get_attributes`, `from_args_and_dict`), so each subclass spells its parameters out:
leaving `video_processor` out is what makes it image-only.
"""

from __future__ import annotations

from transformers import InternVLProcessor, Qwen2_5_VLProcessor, Qwen2VLProcessor


class _ImageOnlyQwen2VL(Qwen2VLProcessor):
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)
        self.video_processor = None


class _ImageOnlyQwen2_5_VL(Qwen2_5_VLProcessor):
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)
        self.video_processor = None


class _ImageOnlyInternVL(InternVLProcessor):
    def __init__(self, image_processor=None, tokenizer=None, image_seq_length: int = 256,
                 chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, image_seq_length=image_seq_length,
                         chat_template=chat_template, **kwargs)
        self.video_processor = None


_IMAGE_ONLY = {"qwen2_vl": _ImageOnlyQwen2VL, "qwen2_5_vl": _ImageOnlyQwen2_5_VL,
               "internvl": _ImageOnlyInternVL}

# transformers saves `type(processor).__name__` as processor_class: giving each subclass its
# family's own name makes a saved folder load with plain AutoProcessor wherever torchvision is.
for _cls in _IMAGE_ONLY.values():
    _cls.__name__ = _cls.__mro__[1].__name__


def no_video_processor_class(family: str) -> type:
    return _IMAGE_ONLY[family]
