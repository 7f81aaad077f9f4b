# `kernels` as a Python package only so that the PyTorch executor imports as `kernels.torch` (its folder name alone
# would shadow PyTorch): run its entry points as `python3 -m kernels.torch.<module>` with this folder's parent on
# PYTHONPATH (core/torch_package.ts). The rest of kernels/ is TypeScript.
