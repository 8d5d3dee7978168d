"""The Train tab's reasons a job cannot run (or a job action cannot be done), in Chinese.

backend/training/spec.py (and jobs.py) write each reason as an English sentence that also carries a key and the
values in it (`Problem`); here each key has its Chinese sentence with the same placeholders, so a
zh page says why in Chinese (ui/problems.py says them). A reason without a translation is shown in
English, never dropped.
"""

from __future__ import annotations

ZH: dict[str, str] = {
    "no_model": "请选择模型：本地模型文件夹或 Hub 上的模型 ID。",
    "model_missing": "模型文件夹 {path} 不存在。",
    "no_data": "请选择训练数据（对话格式的 JSON 文件）。",
    "data_missing": "训练数据文件 {path} 不存在。",
    "images_missing": "图片文件夹 {path} 不存在。",
    "heldout_missing": "留出数据文件 {path} 不存在。",
    "lora_r": "LoRA 秩至少为 1（现在是 {value}）。",
    "lora_alpha": "LoRA alpha 必须大于 0（现在是 {value}）。",
    "lora_dropout": "LoRA dropout 必须不小于 0 且小于 1（现在是 {value}）。",
    "no_targets": "请至少指定一个 LoRA 目标模块（例如 q_proj、v_proj）。",
    "bad_targets": "目标模块必须是 q_proj 这样的模块名（不能含通配符或点号）。",
    "learning_rate": "学习率必须大于 0（现在是 {value}）。",
    "learning_rate_huge": "学习率 {value} 会毁掉模型；请用 1e-4（2B 模型上的 LoRA）到 2e-3（演示模型）之间的值。",
    "schedule": "学习率调度必须是以下之一：{choices}。",
    "warmup": "预热比例必须不小于 0 且小于 1（现在是 {value}）。",
    "weight_decay": "权重衰减不能为负数。",
    "grad_norm": "梯度裁剪范数不能为负数（0 表示不裁剪）。",
    "epochs": "至少训练 1 个 epoch（现在是 {value}）。",
    "batch_size": "批大小至少为 1（现在是 {value}）。",
    "grad_accum": "梯度累积至少为 1 步（现在是 {value}）。",
    "pixels_small": "{value} 像素的图片太小，什么也看不清；至少允许 {least}（56x56），最好 448x448 或更大。",
    "pixels_huge": "每张图片 {value} 像素远超任何模型所用；1024x768（786432）就足够了。",
    "max_length": "每个样本至少要允许 64 个 token（现在是 {value}）。",
    "save_every": "“每 N 步保存”的 N 必须为 0（只在结束时保存）或更大。",
    "keep_last": "至少保留最后一个检查点（保留数必须为 1 或更大）。",
    "eval_every": "“每 N 步评估”的 N 必须为 0（每个 epoch 一次）或更大。",
    "log_every": "“每 N 步记录”的 N 必须为 1 或更大。",
    "device": "设备必须是以下之一：{choices}（现在是 {value!r}）。",
    "gpus": "任务至少需要 1 个 GPU（不用 GPU 训练请把设备设为 cpu）。",
    "gpus_on_cpu": "要求了多个 GPU，但设备是 cpu。",
    "deepspeed_retired": "不再支持 DeepSpeed：超出单个 GPU 的分片微调计划改用 torch 的 FSDP2；从设置中删除 \"deepspeed\" 即可用普通 PyTorch 训练。",
    "pack_tokens": "每个打包行的 token 数至少为 1。",
    "vision_cache": "图片特征缓存大小不能为负数（0 表示不缓存）。",
    "data_workers": "数据加载进程数不能为负数。",
    "threads": "CPU 线程数不能为负数（0 表示使用全部核心）。",
    "unknown_setting": "没有名为 {name!r} 的设置。",
    "empty_value": "{name} 必须是{kind_zh}，现在是空的。",
    "wrong_type": "{name} 必须是{kind_zh}，不能是 {value!r}。",
    "unknown_preset": "没有名为 {name!r} 的预设；请从以下选择：{choices}。",
    # backend/training/jobs.py: what a job action cannot do (states stay as the jobs table shows them)
    "no_job": "没有任务 {job}（它可能已被删除）。",
    "cannot_cancel": "任务 {job} 的状态是 {state}；只有排队中或运行中的任务可以取消。",
    "cannot_resume": "任务 {job} 的状态是 {state}；只有中断、取消或失败的任务可以继续。",
    "cannot_delete": "任务 {job} 正在运行；请先取消再删除。",
    # backend/training/worker.py and lora.py: why a job ended (kept with the job in jobs.sqlite)
    "resume_from_step": "继续训练会从第 {step} 步接着来。",
    "resume_from_start": "还没有保存过检查点，继续训练会从头开始。",
    "cancelled": "已取消。{resume}",
    "stopped": "已停止。{resume}",
    "stopped_by_signal": "训练被信号停止（worker 或机器正在关闭）。{resume}",
    "process_killed": "训练进程被杀死（{signal}）。{resume}",
    "process_unwatched": "训练进程在没有 worker 看管时结束了（应用或机器重启过）。{resume}",
    "ended_silently": "训练进程结束了，但没有说明原因；请查看日志。",
    "failed_see_log": "训练失败；请查看日志。",
    "spec_unreadable": "无法读取任务的设置文件；请查看日志。",
    "process_failed": "训练进程失败（退出码 {status}）：{tail}",
    "disk_full_exit": "训练进程停止了（退出码 {status}），存放 {folder} 的磁盘已满。请清理出空间，然后继续训练。",
    "worker_lacks_gpus": "这个任务要 {wanted} 个 GPU，但训练 worker 只有 {have} 个；请把“GPU 数”设为 {have} 或更少。",
    "no_gpus_for_jobs": ("这个任务设为在 GPU 上训练（设备：cuda），但训练 worker 在这台机器上看不到 GPU；"
                         "请把“设备”改为 cpu 或 auto。"),
    "no_gpu_visible": "这个任务要用 GPU，但它看不到任何 GPU（CUDA_VISIBLE_DEVICES={visible}）。",
    # a checkpoint picked in Chat or Compare (backend/evaluation/choices.py)
    "model_gone": "检查点 {model} 已不存在（它的任务被删除了）；请在列表里重新选一个模型。",
    "checkpoint_folder_gone": "检查点文件夹 {folder} 已不存在；请在列表里重新选一个模型。",
    # the model a job trains (backend/models/loading.py)
    "device_no_gpu": "--device {device}：torch 在这台机器上看不到 GPU；请用 --device cpu 或 auto。",
    "device_no_such_gpu": "--device {device}：torch 在这里看到 {count} 个 GPU，编号 cuda:0 到 cuda:{last}。",
    "model_folder_missing": "模型文件夹 {folder} 不存在。请填一个含有 config.json 和权重的文件夹，或 Qwen/Qwen2-VL-2B-Instruct 这样的 hub id。",
    "model_no_config": "{folder} 里没有 config.json，所以它不是 transformers 模型文件夹。",
    "model_config_unreadable": "无法读取 {model} 的模型配置：{detail} 如果这台服务器连不上 hub，请在别处下载模型，再改填它的本地文件夹。",
    "model_config_not_understood": "{model} 的配置 transformers 无法理解：{detail}",
    "model_not_supported": "{model} 是 '{model_type}' 模型，不是 Foodie Studio 支持的视觉语言模型（{supported}）。",
    "processor_unloadable": "无法加载 {model} 的处理器：{detail}",
    "weights_unloadable": "无法加载 {model} 的权重：{detail}",
    "no_usable_sample": "{path} 里没有可用的样本（跳过了 {skipped} 个）。",
    "data_unusable": "训练数据无法使用：{why}",
    "config_changed": "加载时 {model} 的 config.json 被改动了；请重新开始这个任务。",
    "sample_lost": "有一个样本既不在图片缓存里，也没有被数据加载器解码（这是训练程序的错误）；继续训练即可接着进行。",
    "no_language_model": "在这个模型里找不到语言模型，所以无法在其上放置 LoRA。",
    "targets_not_linear": "目标模块（{targets}）都不是语言模型的线性层；它的线性层名为 {linear}。",
    "out_of_memory": "GPU 显存不足（批大小 {batch}，图片最多 {pixels} 像素）。请打开梯度检查点、缩小图片或减小批大小"
                     "（同时加大梯度累积以保持有效批大小）。",
    "out_of_memory_packed": "GPU 显存不足（批大小 {batch}，图片最多 {pixels} 像素）。请打开梯度检查点、缩小图片或减小批大小。"
                            "Qwen2-VL 系列模型按最多 {tokens} 个 token 的打包行训练：调小设置里的 pack_tokens 也有用，"
                            "加大梯度累积则没有用。",
    "disk_full": "存放 {folder} 的磁盘已满。请清理出空间，然后继续训练（会从最后一个检查点接着来）。",
    "disk_full_checkpoint": "存放 {folder} 的磁盘已满：检查点 {name} 没能保存，也没有留下写了一半的文件。请清理出空间"
                            "（或少保留几个检查点），然后继续训练。",
    "disk_full_final": "存放 {folder} 的磁盘已满：最终的 {name} 没能保存。请清理出空间，然后继续训练。",
    "checkpoint_settings": "检查点 {name} 是用不同的设置（{settings}）训练的，不能用现在的设置接着训练；请新建一个任务。",
    "training_failed": "训练失败：{kind}: {detail}",
}

KINDS_ZH = {"bool": "true 或 false", "int": "整数", "float": "数字", "str": "文本", "list": "名称列表"}
