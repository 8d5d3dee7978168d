"""Where a training process's main thread spends its time, by line of one function: reads a py-spy
speedscope profile (`py-spy record --idle -f speedscope`) and, for the samples inside the last
contiguous stretch of calls to that function, counts the line of that function each sample is on
and the innermost frame below it. Waiting for the GPU (a `.item()`) shows as its own line.

    py-spy record --subprocesses --idle -r 200 -f speedscope -o run.json -- \
        python3 bench/bench_train_speed.py --ours-only
    python3 bench/read_pyspy_lines.py run.json --function train --file lora.py --last 0.5

`--last 0.5` keeps the last half of that stretch (the later epochs of a run, pictures cached);
`--first 0.5` the first half; `--start-at PackedSteps.forward_backward` begins at the training loop
(a packed job's steps, backend/training/steps.py), so that `--start-at PackedSteps.forward_backward
--first 0.5 --lines-of PackedSteps.forward_backward` is about the first epoch of a 3-epoch run (every
picture decoded and through the vision tower), by line of a step's passes.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>.*?):(?P<line>\d+)\)$")


def frame_label(frame: dict) -> tuple[str, str, int]:
    name, path, line = frame.get("name", "?"), frame.get("file", ""), frame.get("line", 0)
    match = FRAME.match(name)
    if match:  # py-spy may fold the place into the name
        name, path, line = match["name"], match["file"], int(match["line"])
    return name, path, int(line or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--function", default="train")
    parser.add_argument("--file", default="lora.py")
    parser.add_argument("--start-at", default="",
                        help="begin the stretch at its first sample inside this function "
                             "(PackedSteps.forward_backward: the training loop, not the model's loading)")
    parser.add_argument("--last", type=float, default=1.0, help="share of the stretch to keep, from its end")
    parser.add_argument("--first", type=float, default=1.0,
                        help="then the share of what is kept to keep, from its start (the first epoch: 0.5)")
    parser.add_argument("--lines-of", default="",
                        help="count the lines of this function instead (samples outside it count as one row)")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    data = json.loads(args.profile.read_text())
    frames = [frame_label(f) for f in data["shared"]["frames"]]

    def inside(stack: list[int], name: str, file: str = "") -> int | None:
        """Index of the innermost frame of `name` in the stack (outermost first), or None."""
        found = [k for k, f in enumerate(stack) if frames[f][0] == name and frames[f][1].endswith(file)]
        return found[-1] if found else None

    best = None
    for profile in data["profiles"]:
        hits = [i for i, stack in enumerate(profile["samples"]) if inside(stack, args.function, args.file) is not None]
        if hits and (best is None or len(hits) > len(best[1])):
            best = (profile, hits)
    if best is None:
        raise SystemExit(f"no sample inside {args.function} ({args.file})")
    profile, hits = best
    # the last contiguous stretch (the timed run comes after the warm-ups)
    stretch = [hits[-1]]
    for i in reversed(hits[:-1]):
        if stretch[-1] - i > 50:
            break
        stretch.append(i)
    stretch.reverse()
    samples = profile["samples"]
    if args.start_at:
        begin = next((k for k, i in enumerate(stretch) if inside(samples[i], args.start_at) is not None), None)
        if begin is None:
            raise SystemExit(f"no sample inside {args.start_at} in the stretch")
        stretch = stretch[begin:]
    stretch = stretch[int(len(stretch) * (1 - args.last)):]
    stretch = stretch[:max(1, int(len(stretch) * args.first))]
    counted, file = (args.lines_of, "") if args.lines_of else (args.function, args.file)
    weights = profile.get("weights") or [1] * len(samples)
    by_line, by_leaf = Counter(), Counter()
    for i in stretch:
        stack = samples[i]  # outermost first
        leaf = frames[stack[-1]]
        by_leaf[f"{leaf[0]} ({Path(leaf[1]).name}:{leaf[2]})"] += weights[i]
        at = inside(stack, counted, file)
        if at is None:
            by_line[(-1, f"(outside {counted})")] += weights[i]
            continue
        below = frames[stack[at + 1]] if at + 1 < len(stack) else None
        by_line[(frames[stack[at]][2], below[0] if below else "")] += weights[i]
    total = sum(weights[i] for i in stretch)
    print(f"{profile.get('name', '')}: {len(stretch)} samples in the kept stretch")
    print(f"by line of {counted} (and the call on it):")
    for (line, call), weight in by_line.most_common(args.top):
        print(f"  {weight / total:6.1%}  line {line:4d}  {call}")
    print("by innermost frame:")
    for leaf, weight in by_leaf.most_common(args.top):
        print(f"  {weight / total:6.1%}  {leaf}")


if __name__ == "__main__":
    main()
