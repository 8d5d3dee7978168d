"""Processors that work without torchvision.

Qwen2-VL's, Qwen3-VL's, InternVL's and SmolVLM's processors carry a video processor, and
transformers' video processors need torchvision, which does not import beside every torch build (it
does not beside the CPU torch our CI uses). We never feed video, so a subclass that takes no video
processor serves images through the family's own, unmodified logic.

transformers reads a processor's parts and saved settings off the parameter list of its `__init__`
(`get_attributes`, `from_args_and_dict`), so each subclass's `__init__` must show the family's own
parameters minus `video_processor`: `image_only` builds such a subclass for any processor class,
with that signature. Which families need one is said in the registry (families.py).
"""

from __future__ import annotations

import functools
import inspect


@functools.cache
def image_only(processor_class: type) -> type:
    """`processor_class` without its video part: the same parameters minus `video_processor`.

    transformers checks a saved processor's settings against the names of its `__init__`'s code
    object (`co_varnames`), not just its signature, so the subclass's `__init__` is written out with
    those names (exec on a generated line, the parameter list of the family's own class). It keeps
    the family's class name, which transformers saves as processor_class: a saved folder loads with
    plain AutoProcessor wherever torchvision is."""
    signature = inspect.signature(processor_class.__init__)
    names = [name for name, p in signature.parameters.items()
             if name not in ("self", "video_processor") and p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    defaults = {name: (None if signature.parameters[name].default is inspect.Parameter.empty
                       else signature.parameters[name].default) for name in names}
    source = (f"def __init__(self, {', '.join(f'{n}=_defaults[{n!r}]' for n in names)}, **kwargs):\n"
              f"    _base.__init__(self, {', '.join(f'{n}={n}' for n in names)}, video_processor=None, **kwargs)\n"
              "    self.video_processor = None\n")
    namespace = {"_defaults": defaults, "_base": processor_class}
    exec(source, namespace)
    return type(processor_class.__name__, (processor_class,), {"__init__": namespace["__init__"],
                                                                "__module__": __name__,
                                                                "__qualname__": processor_class.__name__})
