"""Defect mask of one frame with an exported model, without correlnet (docs/farm.md).
python farm_detect.py MODEL.onnx|MODEL.xml PREV MID NEXT MASK.png   (needs numpy, opencv and onnxruntime or openvino)"""
import sys

import cv2
import numpy as np


def motion(x, hp, wp):
    """The "motion" input of a model exported with the motion skip (its .json's motion_input):
    x (1, 3, H, W) padded to (hp, wp) by repeating the edge, DIS flow (fast) from the middle frame to
    each neighbour, each neighbour warped onto it, middle minus each, minus its median."""
    f = np.pad(x[0], ((0, 0), (0, hp - x.shape[2]), (0, wp - x.shape[3])), mode="edge")
    u8 = np.clip(np.rint(f * 255.0), 0, 255).astype(np.uint8)
    xs, ys = np.meshgrid(np.arange(wp, dtype=np.float32), np.arange(hp, dtype=np.float32))
    out = []
    for k in (0, 2):
        flow = cv2.DISOpticalFlow_create(cv2.DISOpticalFlow_PRESET_FAST).calc(u8[1], u8[k], None)
        d = f[1] - cv2.remap(f[k], xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
        out.append(d - np.float32(np.median(d)))
    return np.stack(out)[None].astype(np.float32)


model, prev, mid, nxt, out = sys.argv[1:6]
x = np.stack([cv2.imread(p, cv2.IMREAD_GRAYSCALE) for p in (prev, mid, nxt)])[None].astype(np.float32) / 255
if model.endswith(".onnx"):
    import onnxruntime
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    feed = {"frames": x}
    for port in session.get_inputs():
        if port.name == "motion":
            feed["motion"] = motion(x, *port.shape[-2:])
    probs = session.run(None, feed)[0]
else:
    import openvino
    compiled = openvino.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    feed = [x] + [motion(x, *port.get_shape()[-2:]) for port in compiled.inputs if "motion" in port.get_names()]
    probs = compiled(feed)[0]
cv2.imwrite(out, np.where(probs[0, 0] >= 0.5, 255, 0).astype(np.uint8))
