"""Defect mask of one frame with an exported model, without correlnet (docs/farm.md).
python farm_detect.py MODEL.onnx|MODEL.xml PREV MID NEXT MASK.png   (needs numpy, opencv and onnxruntime or openvino)"""
import sys

import cv2
import numpy as np

model, prev, mid, nxt, out = sys.argv[1:6]
x = np.stack([cv2.imread(p, cv2.IMREAD_GRAYSCALE) for p in (prev, mid, nxt)])[None].astype(np.float32) / 255
if model.endswith(".onnx"):
    import onnxruntime
    probs = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"frames": x})[0]
else:
    import openvino
    probs = openvino.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})([x])[0]
cv2.imwrite(out, np.where(probs[0, 0] >= 0.5, 255, 0).astype(np.uint8))
