"""Datasets: FoodieQA (folder or hub), the bundled sample, own data; browsing; training samples.

Readers return a ReadResult (records with one schema + a report of bad rows) and never raise on a
bad row; a source that cannot be read at all raises DataError with a sentence for the person.
Nothing here imports gradio: the Dataset tab calls these functions and shows what they return.
"""

from backend.data.browse import (
                                 FACETS,
                                 PAGE_SIZE,
                                 TABLE_COLUMNS,
                                 ChoiceView,
                                 GalleryItem,
                                 Page,
                                 RecordDetail,
                                 RecordFilter,
                                 detail_view,
                                 facet_counts,
                                 filter_records,
                                 find_record,
                                 gallery_page,
                                 paginate,
                                 table_rows,
)
from backend.data.conversion import (
                                 course_answer,
                                 lettered_choices,
                                 multiple_choice_prompt,
                                 to_training_sample,
                                 to_training_samples,
)
from backend.data.foodieqa import FOODIEQA_FILES, parse_foodieqa_rows, read_bundled_sample, read_foodieqa_folder
from backend.data.hub import read_foodieqa_hub
from backend.data.llava_format import export_llava, llava_row, record_from_dict, record_to_dict
from backend.data.own_data import parse_llava_rows, read_bundled_own_data, read_csv_file, read_llava_json, read_own_data
from backend.data.schema import (
                                 CONVERSATION,
                                 MIVQA,
                                 SIVQA,
                                 SOURCE_FOODIEQA,
                                 SOURCE_OWN,
                                 SOURCE_SAMPLE,
                                 TASK_LABELS,
                                 TASKS,
                                 TEXTQA,
                                 DataError,
                                 ReadResult,
                                 Record,
                                 ReportLine,
                                 Turn,
)
from backend.data.sources import combine_results, read_data_folder
from backend.data.split import (
                                 DishSplit,
                                 TrainingSet,
                                 build_training_set,
                                 load_training_set,
                                 samples_file,
                                 split_by_dish,
)
from backend.data.terms import FOODIEQA_LICENSE, FOODIEQA_LICENSE_URL, FOODIEQA_TERMS, TermsNotAccepted, require_terms
from backend.data.thumbnails import ThumbnailCache
from backend.data.uploads import Unpacked, unpack_upload

__all__ = [
                                 "CONVERSATION",
                                 "FACETS",
                                 "FOODIEQA_FILES",
                                 "FOODIEQA_LICENSE",
                                 "FOODIEQA_LICENSE_URL",
                                 "FOODIEQA_TERMS",
                                 "MIVQA",
                                 "PAGE_SIZE",
                                 "SIVQA",
                                 "SOURCE_FOODIEQA",
                                 "SOURCE_OWN",
                                 "SOURCE_SAMPLE",
                                 "TABLE_COLUMNS",
                                 "TASKS",
                                 "TASK_LABELS",
                                 "TEXTQA",
                                 "ChoiceView",
                                 "DataError",
                                 "DishSplit",
                                 "GalleryItem",
                                 "Page",
                                 "ReadResult",
                                 "Record",
                                 "RecordDetail",
                                 "RecordFilter",
                                 "ReportLine",
                                 "TermsNotAccepted",
                                 "ThumbnailCache",
                                 "TrainingSet",
                                 "Turn",
                                 "Unpacked",
                                 "build_training_set",
                                 "combine_results",
                                 "course_answer",
                                 "detail_view",
                                 "export_llava",
                                 "facet_counts",
                                 "filter_records",
                                 "find_record",
                                 "gallery_page",
                                 "lettered_choices",
                                 "llava_row",
                                 "load_training_set",
                                 "multiple_choice_prompt",
                                 "paginate",
                                 "parse_foodieqa_rows",
                                 "parse_llava_rows",
                                 "read_bundled_own_data",
                                 "read_bundled_sample",
                                 "read_csv_file",
                                 "read_data_folder",
                                 "read_foodieqa_folder",
                                 "read_foodieqa_hub",
                                 "read_llava_json",
                                 "read_own_data",
                                 "record_from_dict",
                                 "record_to_dict",
                                 "require_terms",
                                 "samples_file",
                                 "split_by_dish",
                                 "table_rows",
                                 "to_training_sample",
                                 "to_training_samples",
                                 "unpack_upload",
]
