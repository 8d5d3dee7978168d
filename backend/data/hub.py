"""FoodieQA from the Hugging Face hub, for servers that can reach it.

The dataset is gated: the person accepts its terms on the dataset page, and the token comes from
HF_TOKEN or from `hf auth login` (huggingface_hub finds either). Question rows come through
`datasets` and go through the same row parser as the folder reader; the pictures are downloaded
into a plain folder (`download_dir`), not the hub's cache of symbolic links, because the reader
refuses pictures that lead outside their folder.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from backend.data.foodieqa import FOODIEQA_FILES, parse_foodieqa_rows
from backend.data.schema import SOURCE_FOODIEQA, DataError, ReadResult
from backend.data.terms import FOODIEQA_REPO, FOODIEQA_URL

log = logging.getLogger(__name__)


def read_foodieqa_hub(download_dir: str | Path, *, repo_id: str = FOODIEQA_REPO,
                      token: str | None = None, revision: str | None = None) -> ReadResult:
    """Fetch FoodieQA (about 864 MB, once) into `download_dir` and read it; DataError with a
    sentence when the hub cannot be reached or the account has no access."""
    token = token or os.environ.get("HF_TOKEN") or None  # None: huggingface_hub's saved login
    root = Path(download_dir).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    try:
        import datasets
        from huggingface_hub import snapshot_download
        rows_by_task = {}
        for task, file_name in FOODIEQA_FILES.items():
            table = datasets.load_dataset(repo_id, data_files=file_name, split="train", token=token,
                                          revision=revision)
            rows_by_task[task] = table.to_list()
        snapshot_download(repo_id, repo_type="dataset", allow_patterns=["images/*"],
                          local_dir=root, token=token, revision=revision)
    except Exception as err:  # the hub libraries raise many types; all mean "not from here"
        raise _explained(err, repo_id) from err
    log.info("fetched %s into %s", repo_id, root)
    return parse_foodieqa_rows(rows_by_task, root, source=SOURCE_FOODIEQA,
                               file_names={t: f"{repo_id}/{n}" for t, n in FOODIEQA_FILES.items()})


def _explained(err: Exception, repo_id: str) -> DataError:
    """The hub's failure as a DataError that says what to do about it."""
    name = type(err).__name__
    text = str(err)
    if name == "GatedRepoError" or "gated" in text.lower() or "401" in text or "403" in text:
        return DataError("hub_gated", "{repo} is gated and this account has no access: accept its terms "
                         "at {url} while logged in, then set HF_TOKEN or run `hf auth login` on this "
                         "server.", repo=repo_id, url=FOODIEQA_URL)
    if isinstance(err, (ConnectionError, OSError, TimeoutError)) or "reach" in text.lower():
        return DataError("hub_unreachable", "The Hugging Face hub cannot be reached from this server, so "
                         "{repo} cannot be downloaded here. Download it on a machine that can reach the hub "
                         "(`hf download {repo} --repo-type dataset --local-dir FoodieQA`), copy the "
                         "folder over and open it with --data.", repo=repo_id)
    return DataError("hub_failed", "{repo} could not be read from the hub ({detail}).", repo=repo_id,
                     detail=f"{name}: {text[:200]}")
