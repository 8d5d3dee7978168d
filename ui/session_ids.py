"""A fix for Gradio 6's per-visitor state, which otherwise grows by one component per update.

When an event returns an update for a component (`gr.MultimodalTextbox(value=None, interactive=True)`,
`gr.update(...)`), Gradio stores a new component under the old one's id in that visitor's session,
but the new one has an id of its own. When a later event takes that component as input, Gradio
stores it once more under its own id, with its config: an entry that nothing reads or frees while
the session lives. Chat's input box is updated and read by every question, so each answer left
~34 KB behind: the soak benchmark's app grew 569 -> 630 MiB in 10 minutes (bench/README.md "Soak").

The fix: a replacement stored under an id takes that id, so the later event finds it where it is.
Measured with the same load: RSS levels off, and a session keeps its ~300 entries (tests/test_session_ids.py).
Harmless where Gradio already gives replacements the old id."""

from __future__ import annotations

from gradio import state_holder
from gradio.blocks import Block
from gradio.components import State

_KEEPS_IDS = "_foodie_keeps_ids"


def keep_replacement_ids() -> bool:
    """Patches Gradio's SessionState once per process; returns whether it did so now."""
    original = state_holder.SessionState.__setitem__
    if getattr(original, _KEEPS_IDS, False):
        return False

    def setitem(self, key: int, value) -> None:
        if isinstance(value, Block) and value._id != key and not isinstance(self.blocks_config.blocks.get(key), State):
            value._id = key
        original(self, key, value)

    setattr(setitem, _KEEPS_IDS, True)
    setitem.gradios_own = original  # for the test that shows Gradio's own still needs this
    state_holder.SessionState.__setitem__ = setitem
    return True
