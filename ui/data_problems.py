"""Why a picture, a chat message or a dataset cannot be used, in Chinese.

backend/images.py (ImageError), backend/chat.py (ChatInputError), backend/data/ (DataError,
UnsafePath, TermsNotAccepted), the Train tab's choice of training data and the Compare tab's scoring
request (ScoringRequestError) write each reason as an English `Problem` with a key and the values in
it; here each key has its Chinese sentence with the same placeholders. ui/problems.py says them.
"""

from __future__ import annotations

ZH: dict[str, str] = {
    # backend/images.py: a picture someone uploaded or a dataset names
    "picture_too_large": ("{name} 是 {width}×{height}（约 {megapixels:.0f} 百万像素），超过了 {limit} 百万像素的上限，"
                          "可能是解压炸弹。请缩小后再试。"),
    "picture_not_found": "找不到 {name}（可能已被删除），请重新上传。",
    "picture_unreadable": "{name} 不是 Foodie Studio 能读取的图片（支持 JPEG、PNG、WebP、GIF、BMP 等）。",
    "picture_bomb": "{name} 太大，无法安全打开，可能是解压炸弹。",
    "picture_damaged": "{name} 已损坏或不完整，无法读取（{detail}）。",
    # ui/compare.py: a scoring request that cannot start
    "scoring_no_set": "请先选择一个题目集（列表为空时请点“刷新”）。",
    "scoring_nothing_to_score": "{name} 里没有可评分的选择题。",
    # backend/chat.py: a chat message that cannot be sent
    "chat_empty": "请先输入问题或拖入一张菜品照片。",
    "chat_too_long": "这条消息有 {length} 个字符，上限是 {limit} 个。",
    "chat_too_many_pictures": "每条消息最多 {limit} 张图片。",
    # backend/data/: a source that cannot be read at all
    "nothing_at": "{path} 不存在。",
    "no_file": "{path} 处没有文件。",
    "not_a_file": "{path} 不是文件。",
    "no_folder": "{path} 处没有文件夹。",
    "folder_is_file": "{path} 是文件，不是文件夹；请给出存放数据的文件夹。",
    "no_source": "没有选择数据源。",
    "image_folder_missing": "图片文件夹 {folder} 不存在。",
    "own_data_kind": "{file} 既不是 .json（LLaVA 对话）也不是 .csv（图片、问题、答案）文件。",
    "own_folder_empty": "文件夹 {folder} 是空的；请把 LLaVA 格式的 .json 或图片/问题/答案三列的 .csv 和图片一起放进去。",
    "own_folder_no_data_file": "文件夹 {folder} 里没有描述图片的 .json 或 .csv 文件。",
    "own_folder_several": "文件夹 {folder} 里有多个数据文件（{files}），请只选一个。",
    "data_file_unsafe": "没有读取 {file}：{reason}。",
    "foodieqa_folder_empty": "文件夹 {folder} 是空的；里面应有 FoodieQA 的 {files} 和 images/。",
    "foodieqa_files_missing": "文件夹 {folder} 里没有 FoodieQA 的任何文件（{files}），是不是选错了文件夹？",
    "hub_gated": ("{repo} 需要申请访问，而当前账号没有权限：请登录后在 {url} 接受其条款，"
                  "然后在这台服务器上设置 HF_TOKEN 或运行 `hf auth login`。"),
    "hub_unreachable": ("这台服务器连不上 Hugging Face Hub，无法在这里下载 {repo}。请在能连上 Hub 的机器上下载"
                        "（`hf download {repo} --repo-type dataset --local-dir FoodieQA`），把文件夹拷过来，再用 --data 打开。"),
    "hub_failed": "无法从 Hub 读取 {repo}（{detail}）。",
    # backend/data/safe_paths.py: why a path in a data file is not followed (a clause inside a sentence)
    "path_not_text": "路径不是文本",
    "path_empty": "路径为空",
    "path_nul": "路径里有 NUL 字符",
    "path_absolute": "这是绝对路径，路径必须相对于数据文件夹",
    "path_climbs": "路径用“..”跳出了数据文件夹",
    "path_unresolvable": "路径无法解析（符号链接成环，或名称太长）",
    "path_outside": "路径（经符号链接）指向了数据文件夹之外",
    # backend/data/uploads.py
    "upload_folder_exists": "{folder} 已存在；上传的文件要放进新的文件夹。",
    "upload_too_large": "上传的内容超过了 {limit}。",
    "upload_empty": "上传的内容里没有文件。",
    "zip_unreadable": "{archive} 不是可读取的 .zip 文件（{detail}）。",
    "zip_too_large": "{archive} 解压后有 {size}，超过了这次上传剩余的 {budget}。",
    "zip_too_many_files": "{archive} 里有 {count} 个文件，超过了上限 {limit} 个。",
    # backend/data/library.py, split.py, llava_format.py, terms.py: saving and reading training sets
    "set_name_empty": "请给训练集起个名字。",
    "set_name_long": "名称有 {length} 个字符，最多 {limit} 个。",
    "set_name_bad": "{name!r} 不能作训练集名称：只能用字母、数字、“-”、“_”和“.”，并以字母或数字开头（不能有“/”或空格）。",
    "set_name_outside": "{name!r} 指向了 {root} 之外。",
    "no_samples": "所选记录都无法生成训练样本；请换别的任务类型或数据源。",
    "set_no_manifest": "{folder} 里没有 {manifest}：它不是已保存的训练集（或保存没有完成）。",
    "set_manifest_damaged": "清单文件 {path} 已损坏（{detail}）。",
    "set_pictures_gone": "这个训练集的图片原本在 {folder}，该文件夹已不存在。",
    "set_samples_bad": "{folder} 中的 {file} 有 {count} 处问题，第一处在第 {row} 行：{message}",
    "set_questions_unreadable": "无法读取 {folder} 中的 {file}（{detail}）。",
    "saved_record_outside": "一条已保存的记录（{id}）用到了 {root} 之外的图片：{reason}。",
    "saved_record_damaged": "一条已保存的记录已损坏（{detail}）。",
    "foodieqa_terms": ("所选记录中有 {count} 条来自 FoodieQA，它采用 {license} 许可，只供研究和评测，不可用于训练。"
                       "要用它作训练数据，请先阅读条款并确认接受；或者改用自己的数据或内置示例来训练。"),
    # ui/train.py: the Train tab's choice of training data
    "not_a_saved_set": "训练数据必须是在“数据集”页保存的训练集。",
}
