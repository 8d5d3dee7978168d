"""Where a training process's main thread spends its time, by line of one function: reads a py-spy
speedscope profile (`py-spy record --idle -f speedscope`) and, for the samples inside the last
contiguous stretch of calls to that function, counts the line of that function each sample is on
and the innermost frame below it. Waiting for the GPU (a `.item()`) shows as its own line.

    py-spy record --subprocesses --idle -r 200 -f speedscope -o run.json -- python3 bench/bench_train_speed.py --ours-only
    python3 bench/read_pyspy_lines.py run.json --function train --file lora.py --last 0.5

`--last 0.5` keeps the last half of that stretch (the later epochs of a run, pictures cached).
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
    parser.add_argument("--last", type=float, default=1.0, help="share of the stretch to keep, from its end")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    data = json.loads(args.profile.read_text())
    frames = [frame_label(f) for f in data["shared"]["frames"]]
    best = None
    for profile in data["profiles"]:
        inside = [i for i, stack in enumerate(profile["samples"])
                  if any(frames[f][0] == args.function and frames[f][1].endswith(args.file) for f in stack)]
        if inside and (best is None or len(inside) > len(best[1])):
            best = (profile, inside)
    if best is None:
        raise SystemExit(f"no sample inside {args.function} ({args.file})")
    profile, inside = best
    # the last contiguous stretch (the timed run comes after the warm-ups)
    stretch = [inside[-1]]
    for i in reversed(inside[:-1]):
        if stretch[-1] - i > 50:
            break
        stretch.append(i)
    stretch.reverse()
    stretch = stretch[int(len(stretch) * (1 - args.last)):]
    weights = profile.get("weights") or [1] * len(profile["samples"])
    by_line, by_leaf = Counter(), Counter()
    for i in stretch:
        stack = profile["samples"][i]  # outermost first
        at = max(k for k, f in enumerate(stack) if frames[f][0] == args.function and frames[f][1].endswith(args.file))
        line = frames[stack[at]][2]
        leaf = frames[stack[-1]]
        below = frames[stack[at + 1]] if at + 1 < len(stack) else None
        by_line[(line, below[0] if below else "")] += weights[i]
        by_leaf[f"{leaf[0]} ({Path(leaf[1]).name}:{leaf[2]})"] += weights[i]
    total = sum(weights[i] for i in stretch)
    print(f"{profile.get('name', '')}: {len(stretch)} samples in the kept stretch")
    print(f"by line of {args.function} (and the call on it):")
    for (line, call), weight in by_line.most_common(args.top):
        print(f"  {weight / total:6.1%}  line {line:4d}  {call}")
    print("by innermost frame:")
    for leaf, weight in by_leaf.most_common(args.top):
        print(f"  {weight / total:6.1%}  {leaf}")


if __name__ == "__main__":
    main()
