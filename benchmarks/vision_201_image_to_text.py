"""Benchmark of vision/201/image-to-text; results go to docs/benchmarks.md.

    python benchmarks/vision_201_image_to_text.py               # the check, then built scenes
    python benchmarks/vision_201_image_to_text.py epochs=1 --quick --no-write   # prove it works

Three runs of `deepscape run vision/201/image-to-text`, each from an empty run store (the
encoder's features are computed inside the timed run): the check's command on
../shared/data/flickr8k-800 (600 photos trained on, 40 watched, 160 tested; 5 captions each), the
offline default on built digit scenes (the encoder's last two stages tuned with the decoder), and
its peer, the same scenes with the whole encoder frozen (`tuned_stages=0`; `--quick` leaves it
out). Each captioner — beam search, greedy, nearest-neighbour retrieval, the
most frequent caption — is scored by pycocoevalcap on the same test pictures. Targets: on the
photos CIDEr and BLEU-4 above retrieval's; on the scenes ≥ 90 % of captions exactly grounded (the
right two items, their sizes and how they lie). `key=value` overrides apply to every run.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _report import as_typed, table, with_overrides, write_section

from deepscape.lab import run_lab
from deepscape.runs import Run, RunStore

LAB = "vision/201/image-to-text"
FLICKR = Path(__file__).resolve().parents[2] / "shared" / "data" / "flickr8k-800"
CHECK = [f"data_dir={FLICKR}"]
SCENES: list[str] = []
FROZEN = ["tuned_stages=0"]  # the peer: what tuning the encoder's top buys
NAMES = {"greedy": "greedy decoding", "nearest": "nearest-neighbour retrieval",
         "frequent": "most frequent training caption"}  # fmt: skip


def report(run: Run, items: list[str]) -> str:
    summary, m = run.summary, run.summary["metrics"]
    scores, main = summary["scores"], summary["main_decoding"]
    metrics = ["bleu_1", "bleu_4", "meteor", "rouge_l", "cider"]
    grounding = "grounding" in scores[main]
    if grounding:
        metrics += ["grounding", "exact_grounding"]
    rows = [[f"captioner, beam search ({main[4:]} beams)" if name.startswith("beam")
             else NAMES[name], *(f"{s[k]:.3f}" if k in s else "–" for k in metrics)]
            for name, s in scores.items()]  # fmt: skip
    data = summary["data"]
    nearest = scores["nearest"]
    if grounding:
        verdicts = [f"- exact grounding {m['exact_grounding']:.1%} (target ≥ 90 %) "
                    f"{'✓' if m['exact_grounding'] >= 0.9 else '✗'}; the two items and how "
                    f"they lie, sizes aside: {m['grounding']:.1%}"]  # fmt: skip
    else:
        verdicts = [
            f"- CIDEr {m['cider']:.3f} against retrieval's {nearest['cider']:.3f} "
            f"({m['cider_over_nearest']:.2f}×, target > 1) "
            f"{'✓' if m['cider'] > nearest['cider'] else '✗'}",
            f"- BLEU-4 {m['bleu_4']:.3f} against retrieval's {nearest['bleu_4']:.3f} "
            f"{'✓' if m['bleu_4'] > nearest['bleu_4'] else '✗'}",
        ]
    minutes = summary["wall_seconds"] / 60, m["train_seconds"] / 60
    verdicts.append(f"- wall time {minutes[0]:.1f} min, of which training {minutes[1]:.1f} min "
                    "(the rest: the encoder's features, decoding, scoring)")  # fmt: skip
    java = "" if summary["java"] else " (no Java here: no METEOR, simple tokens)"
    model = summary["model"]
    stages = model.get("tuned_stages") or 0
    tuned = f"the encoder's last {stages} stages tuned with it" if stages else "the encoder frozen"
    return (
        f"`deepscape run {LAB} {' '.join(items)}`: {data['name']}, {data['train']:,} training / "
        f"{data['validation']:,} validation / {data['test']:,} test pictures; a decoder "
        f"cross-attending to EfficientNet-Lite0's grid ({model['cells']} cells of a "
        f"{model['image_size']}-px picture), {tuned}: {summary['costs']['parameters']:,} "
        f"parameters trained. pycocoevalcap's scores on the same "
        f"test pictures{java}.\n\n"
        + table(["captioner", *metrics], rows)
        + "\n\n"
        + "\n".join(verdicts)
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print, leave the doc alone")
    parser.add_argument("--quick", action="store_true", help="without the frozen encoder's run")
    parser.add_argument("overrides", nargs="*", help="key=value options for every run")
    args = parser.parse_args()
    bodies = []
    for base in (CHECK, SCENES, *([] if args.quick else [FROZEN])):
        with tempfile.TemporaryDirectory() as home:
            items = with_overrides(base, args.overrides)
            run = run_lab(LAB, items, store=RunStore(Path(home)), show_progress=True)
            bodies.append(report(run, items))
        body = "\n".join(bodies)
        if args.no_write:
            print(as_typed(body))
        else:  # after each run: the check's numbers are kept should the second be stopped
            write_section("vision_201_image_to_text", f"{LAB}: captions on photos and scenes",
                          body)  # fmt: skip


if __name__ == "__main__":
    main()
