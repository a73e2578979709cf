"""consumer/: the Faust workers — fetch images from S3, classify them with SqueezeNet, write results."""

import os

# The trunk runs in ONNX Runtime and the heads in torch, on the same cores, taking turns: a
# thread pool that spins after its work holds a core the other needs (with both spinning,
# ImageNet alone took over twice as long: benchmarks/HISTORY.md, "Heads on one trunk"). So
# torch's OpenMP threads sleep when idle (read when torch is first imported: set here, before
# any consumer module imports it; a value the user set is kept), and consumer/engines.py turns
# ONNX Runtime's spinning off.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
