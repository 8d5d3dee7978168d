"""Fine-tuning (LoRA, or the whole language model): a typed job spec, a job store in SQLite, a
background worker, and the training program each job runs as its own process.

    spec.py         JobSpec, its checks (problems / validate), presets "demo-cpu" and "2b-gpu"
    jobs.py         JobStore: submit, list, get, cancel, resume, delete, checkpoints, metrics, log_tail
    worker.py       the worker process (python -m backend.training.worker), spawn / stop for the app
    views.py        what the Train tab shows: job rows with progress, loss curves, log tails, adapters
    lora.py         the training program (python -m backend.training.lora spec.json; torchrun for DDP):
                    train() reads top to bottom, set-up, the loop, the final adapter
    steps.py        a step's forward and backward passes, one StepRunner per path (padded, packed)
    sharding.py     FSDP2: the model split across the job's processes ("shard": true in the spec)
    packed.py       the fast path: packed rows, pictures through the vision tower once, answer-only logits
    lora_forward.py, vision_kernels.py, flash_varlen.py
                    the fast path's LoRA layers, vision-tower kernels and varlen attention
    plain_loop.py   the plain peft recipe, the reference the training program is measured and tested against
    job_data.py     a job's samples, the steps they are dealt into, the loaders that decode them
    step_totals.py  each step's loss and counts, read from the GPU a step late and logged
    demo_data.py    the bundled 72-question training set and the demo preset ready to submit
    samples.py      LLaVA / XTuner conversation JSON -> chat-template messages
    encoding.py     messages -> tokens with answer-only labels (IGNORE_INDEX elsewhere), batching
    checkpoints.py  atomic checkpoints gathered from every rank, resume, the final adapter (or model)
    export.py       a checkpoint exported: merged model, adapter with its card (model_card.py), zip
    job_folder.py   what a job folder holds, metrics.jsonl written and read back cheaply
    processes.py    torchrun ranks, stop signals, DataLoader workers that ignore them
    schedule.py     learning rate per step, each epoch's sample order per rank
    errors.py       TrainingError: a failure with a sentence for the person
    check.py        exact-answer check of a tuned model (benchmark and tests)

Nothing here imports gradio.
"""
