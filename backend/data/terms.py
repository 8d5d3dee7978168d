"""FoodieQA's license and terms, and the gate that keeps its questions out of training by default.

FoodieQA's natural uses are browsing and scoring. Its dataset card says research and evaluation
only, not training; people who train on it anyway must see that and say so, explicitly. The bundled
sample and own data carry no such terms.
"""

from __future__ import annotations

from collections.abc import Iterable

from backend.data.schema import SOURCE_FOODIEQA, Record
from backend.problems import ProblemError

FOODIEQA_REPO = "lyan62/FoodieQA"
FOODIEQA_LICENSE = "CC BY-NC-ND 4.0"
FOODIEQA_LICENSE_URL = "https://creativecommons.org/licenses/by-nc-nd/4.0/"
FOODIEQA_URL = f"https://huggingface.co/datasets/{FOODIEQA_REPO}"

FOODIEQA_TERMS = f"""\
FoodieQA (Li et al., "FoodieQA: A Multimodal Dataset for Fine-Grained Understanding of Chinese \
Food Culture", EMNLP 2024), {FOODIEQA_URL}

License: Creative Commons Attribution-NonCommercial-NoDerivatives 4.0 International \
({FOODIEQA_LICENSE}), {FOODIEQA_LICENSE_URL}
- Attribution: credit the authors and link the license.
- NonCommercial: no commercial use.
- NoDerivatives: do not share modified versions of the dataset.

Terms of the dataset card: FoodieQA is for research and evaluation only; it is not meant to be \
used for training. Foodie Studio never bundles its pictures or questions.

If you train on it anyway, you do so on your own responsibility, and any score the tuned model \
then gets on the same questions is contaminated: score only on dishes held out from training."""


class TermsNotAccepted(ProblemError, PermissionError):
    """FoodieQA records were about to become training samples without the person's confirmation."""


def require_terms(records: Iterable[Record], accept_terms: bool) -> None:
    """Refuse, with a sentence, to go on with FoodieQA records unless `accept_terms` is True."""
    if accept_terms:
        return
    count = sum(1 for r in records if r.source == SOURCE_FOODIEQA)
    if count:
        raise TermsNotAccepted(
            "foodieqa_terms", "{count} of the chosen records come from FoodieQA, which is licensed "
            "{license} and meant for research and evaluation only, not for training. Read its terms and "
            "confirm that you accept them to use it as training data; or train on your own data "
            "or the bundled sample.", count=count, license=FOODIEQA_LICENSE)


# The bundled sample's terms (examples/LICENSE.md), for the model card of an adapter trained on it.
SAMPLE_TERMS = """\
Foodie Studio's bundled sample (examples/ in Foodie Studio; see examples/LICENSE.md there): pictures \
drawn with Pillow from glyphs of the Noto Color Emoji font, whose images are licensed under the \
Apache License 2.0 and whose font files under the SIL Open Font License 1.1 (the pictures are \
offered under the same terms); questions, choices and answers written by the Foodie Studio \
developers, under the license of Foodie Studio's code. Nothing in it comes from FoodieQA."""

OWN_DATA_TERMS = """\
Own data (files a person brought, or taste notes corrected in Chat): its terms are those of \
whoever made it. Foodie Studio does not know them: state them here before sharing this adapter."""
