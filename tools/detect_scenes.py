#!/usr/bin/env python3
"""How well `nabla vision detect` finds and labels faces in whole photos: scenes
composed of held-out face-mask photos pasted at known places on a plain grey
background, detected and classified by a run trained without those photos.

Steps (all from one seed): the face-mask folder's files are split per class,
`--held-out` of them kept aside; a `cnn-bn` is trained on the rest with
`nabla vision train` (unless --run names a trained run whose data excluded the
held-out files, e.g. one trained on this script's --train-dir; or, with
`--compare MODELS`, `nabla vision compare --models MODELS` runs on the same
photos and its best run, by best validation accuracy, is the one used); scenes of
`--per-scene` held-out photos, each resized to a random side in [120, 260]
pixels and pasted without overlap on 1280 x 720 grey; `nabla vision detect
--json` on every scene. A pasted photo counts as found when a detected face's
centre lies inside it (one face per photo), and as labelled right when that
face's class is the photo's folder. Prints the fraction of pasted faces found
and the fraction of found faces labelled right, and writes one JSON file.

Run:

    python3 -m venv /tmp/bm && /tmp/bm/bin/pip install numpy pillow
    cargo build --release -p nabla-cli
    target/release/nabla weights download mtcnn
    /tmp/bm/bin/python tools/detect_scenes.py --data data/face-mask --work /tmp/scenes
    /tmp/bm/bin/python tools/detect_scenes.py --data data/face-mask --work /tmp/scenes-compare \
        --compare cnn-bn,efficientnet-lite0-pretrained,efficientnet-lite0-probe,efficientnet-lite0-fine-tune
"""

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path

from PIL import Image


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--nabla", default="target/release/nabla")
    ap.add_argument("--run", help="a trained run (default: train a cnn-bn here)")
    ap.add_argument("--compare", help="comma-separated `vision compare` runs; the best one is used")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--held-out", type=float, default=0.1)
    ap.add_argument("--scenes", type=int, default=20)
    ap.add_argument("--per-scene", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    data, work = Path(args.data), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    train_dir = work / "train"
    held = []
    for cls in sorted(p.name for p in data.iterdir() if p.is_dir()):
        files = sorted(p for p in (data / cls).iterdir() if p.is_file())
        rng.shuffle(files)
        k = int(len(files) * args.held_out)
        held += [(f, cls) for f in files[:k]]
        (train_dir / cls).mkdir(parents=True, exist_ok=True)
        for f in files[k:]:
            link = train_dir / cls / f.name
            if not link.exists():
                os.symlink(f.resolve(), link)
    run = Path(args.run) if args.run else work / "run"
    if args.compare:
        subprocess.run([args.nabla, "vision", "compare", "--data", str(train_dir), "--models", args.compare,
                        "--out", str(work / "compare"), "--quiet"], check=True)
        # The run nabla calls best (`Comparison::best`, whose gallery it is).
        comparison = json.loads((work / "compare" / "comparison.json").read_text())
        name = comparison["gallery"]["run"]
        best = next(r for r in comparison["rows"] if r["name"] == name)
        print(f"best run of the comparison: {name} ({100 * best['best_val_accuracy']:.2f} %)")
        run = work / "compare" / name
    elif not args.run and not (run / "best.bpk").exists():
        subprocess.run([args.nabla, "vision", "train", "--data", str(train_dir), "--model", "cnn-bn",
                        "--epochs", str(args.epochs), "--out", str(run), "--overwrite"], check=True)
    rng.shuffle(held)
    scenes, truth = [], []
    for s in range(args.scenes):
        canvas = Image.new("RGB", (1280, 720), (128, 128, 128))
        placed = []
        for f, cls in held[s * args.per_scene:(s + 1) * args.per_scene]:
            img = Image.open(f).convert("RGB")
            side = rng.randint(120, 260)
            scale = side / max(img.size)
            img = img.resize((max(1, int(img.width * scale)), max(1, int(img.height * scale))), Image.BILINEAR)
            for _ in range(200):
                x, y = rng.randint(0, 1280 - img.width), rng.randint(0, 720 - img.height)
                box = (x, y, x + img.width, y + img.height)
                if all(box[2] <= b[0] or box[0] >= b[2] or box[3] <= b[1] or box[1] >= b[3] for b, _, _ in placed):
                    canvas.paste(img, (x, y))
                    placed.append((box, cls, str(f)))
                    break
        path = work / f"scene-{s:02d}.png"
        canvas.save(path)
        scenes.append(str(path))
        truth.append(placed)
    out = subprocess.run([args.nabla, "vision", "detect", "--checkpoint", str(run), *scenes, "--json",
                          "--out", str(work / "drawn")], check=True, capture_output=True, text=True)
    found = right = pasted = detections = 0
    for photo, placed in zip(json.loads(out.stdout), truth):
        faces = photo["faces"]
        detections += len(faces)
        for box, cls, _ in placed:
            pasted += 1
            inside = [f for f in faces
                      if box[0] <= (f["bbox"][0] + f["bbox"][2]) / 2 <= box[2]
                      and box[1] <= (f["bbox"][1] + f["bbox"][3]) / 2 <= box[3]]
            if inside:
                found += 1
                best = max(inside, key=lambda f: f["score"])
                right += best["class"] == cls
    result = {"pasted": pasted, "found": found, "labelled_right": right, "detections": detections,
              "found_fraction": found / max(pasted, 1), "right_fraction": right / max(found, 1),
              "run": str(run), "held_out": len(held), "scenes": len(scenes)}
    (work / "scenes.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
