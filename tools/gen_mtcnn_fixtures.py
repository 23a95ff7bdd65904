#!/usr/bin/env python3
"""Parity fixture for nabla's MTCNN networks (crates/vision/src/mtcnn.rs):
facenet-pytorch's PNet, RNet and ONet with weights drawn from numpy's generator,
and their outputs on inputs from the same generator.

Weights: np.random.seed(11), then for each network in the order pnet, rnet, onet
and each state-dict key in sorted order one np.random.randn(*shape), scaled:
biases 0.1 v, PReLU slopes 0.25 + 0.05 v, convolution and dense weights
v * sqrt(2 / fan_in). Inputs, from the same generator afterwards:
randn(1, 3, 31, 29) for P-Net (odd sides, so that ceil-mode pooling has a
partial last window), randn(3, 3, 24, 24) for R-Net, randn(2, 3, 48, 48) for O-Net.
The Rust test (crates/vision/tests/mtcnn.rs) draws the same numbers. Whole
detections with the published weights: scikit-image's astronaut, and scenes
of face-mask photos (SCENES below; the folder from $NABLA_FACE_MASK, by
default ../shared/data/face-mask).

Run (writes crates/vision/tests/fixtures/mtcnn_parity.json):

    python3 -m venv /tmp/bm && /tmp/bm/bin/pip install numpy torch requests pillow tqdm
    /tmp/bm/bin/pip install --no-deps facenet-pytorch==2.6.0 && /tmp/bm/bin/pip install scikit-image
    /tmp/bm/bin/python tools/gen_mtcnn_fixtures.py
"""

import json
import math
import os
import pathlib

import numpy as np
import torch
from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/vision/tests/fixtures/mtcnn_parity.json"


def scaled(name, v):
    if name.endswith("bias"):
        return 0.1 * v
    if name.startswith("prelu"):
        return 0.25 + 0.05 * v
    return v * math.sqrt(2.0 / int(np.prod(v.shape[1:])))


# Scenes of face-mask photos pasted at their own size on plain grey (128),
# each photo's top-left corner given: the test composes the same scene from
# the same files (the photos are not committed; without the folder the test
# is skipped). Only PNGs (RGB and RGBA), which both sides decode to the same
# pixels: the class without masks is all JPEG, and PIL's libjpeg-turbo and
# the image crate's decoder differ by up to 3 levels (0.3 on average), which
# moved one of four faces of a JPEG scene to IoU 0.915. The fixture records
# each photo's pixel sum, so the test knows it composed the same scene.
FACE_MASK = pathlib.Path(os.environ.get("NABLA_FACE_MASK", "../shared/data/face-mask"))
SCENES = [
    {"size": [640, 360], "photos": [["with_mask/1158.png", 20, 30], ["with_mask/Screenshot (316).png", 180, 40],
                                    ["with_mask/OIP (5).png", 390, 60]]},
    {"size": [480, 320], "photos": [["with_mask/Augmented_130_939150.png", 10, 10],
                                    ["with_mask/Screenshot (324).png", 260, 20], ["with_mask/86.png", 270, 180]]},
]


def compose_and_detect(scene, nets):
    from PIL import Image
    from facenet_pytorch.models.utils.detect_face import detect_face

    canvas = Image.new("RGB", tuple(scene["size"]), (128, 128, 128))
    photos = []
    for name, x, y in scene["photos"]:
        img = Image.open(FACE_MASK / name).convert("RGB")
        canvas.paste(img, (x, y))
        photos.append({"file": name, "at": [x, y], "size": list(img.size),
                       "pixel_sum": int(np.asarray(img, dtype=np.int64).sum())})
    with torch.no_grad():
        boxes, points = detect_face([canvas], 20, nets["pnet"], nets["rnet"], nets["onet"], [0.6, 0.7, 0.7],
                                    0.709, "cpu")
    return {"size": scene["size"], "background": 128, "photos": photos,
            "boxes": np.asarray(boxes[0], dtype=np.float64).reshape(-1, 5).tolist(),
            "points": np.asarray(points[0], dtype=np.float64).reshape(-1, 5, 2).tolist()}


def main():
    np.random.seed(11)
    nets = {"pnet": PNet(pretrained=False), "rnet": RNet(pretrained=False), "onet": ONet(pretrained=False)}
    keys = {}
    for net_name, net in nets.items():
        net.eval()
        sd = net.state_dict()
        keys[net_name] = []
        new = {}
        for name in sorted(sd):
            shape = list(sd[name].shape)
            keys[net_name].append([name, shape])
            new[name] = torch.from_numpy(scaled(name, np.random.randn(*shape))).float()
        net.load_state_dict(new)
    shapes = {"pnet": [1, 3, 31, 29], "rnet": [3, 3, 24, 24], "onet": [2, 3, 48, 48]}
    outputs = {}
    for net_name, net in nets.items():
        x = torch.from_numpy(np.random.randn(*shapes[net_name])).float()
        with torch.no_grad():
            outs = net(x)
        outputs[net_name] = [o.double().numpy().tolist() for o in outs]
    # The published weights (the wheel's pnet.pt, rnet.pt, onet.pt) on inputs
    # from np.random.seed(12): randn(1, 3, 20, 18), randn(2, 3, 24, 24),
    # randn(1, 3, 48, 48); checked when nabla has imported the wheel.
    np.random.seed(12)
    pretrained = {"pnet": PNet(), "rnet": RNet(), "onet": ONet()}
    pre_shapes = {"pnet": [1, 3, 20, 18], "rnet": [2, 3, 24, 24], "onet": [1, 3, 48, 48]}
    pre_outputs = {}
    for net_name, net in pretrained.items():
        net.eval()
        x = torch.from_numpy(np.random.randn(*pre_shapes[net_name])).float()
        with torch.no_grad():
            pre_outputs[net_name] = [o.double().numpy().tolist() for o in net(x)]
    # Whole detections, facenet's detect_face with its defaults (min face 20,
    # thresholds 0.6/0.7/0.7, factor 0.709), on scikit-image's astronaut
    # (public domain) at 192 x 192, stored beside this fixture as a PNG.
    from PIL import Image
    from facenet_pytorch.models.utils.detect_face import detect_face

    png = OUT.parent / "astronaut192.png"
    if not png.exists():
        from skimage import data
        Image.fromarray(data.astronaut()).resize((192, 192), Image.BILINEAR).save(png, optimize=True)
    img = Image.open(png).convert("RGB")
    with torch.no_grad():
        boxes, points = detect_face([img], 20, pretrained["pnet"], pretrained["rnet"], pretrained["onet"],
                                    [0.6, 0.7, 0.7], 0.709, "cpu")
    detections = {"image": png.name, "boxes": np.asarray(boxes[0], dtype=np.float64).tolist(),
                  "points": np.asarray(points[0], dtype=np.float64).tolist()}
    scenes = [compose_and_detect(scene, pretrained) for scene in SCENES]
    fixture = {"seed": 11, "detections": detections, "scenes": scenes, "keys": keys, "input_shapes": shapes, "outputs": outputs,
               "pretrained": {"seed": 12, "input_shapes": pre_shapes, "outputs": pre_outputs},
               "source": "facenet-pytorch 2.6.0 PNet/RNet/ONet, torch " + torch.__version__}
    OUT.write_text(json.dumps(fixture))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
