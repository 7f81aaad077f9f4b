# The PyTorch executor package, imported as `kernels.torch` (relative imports inside; nothing edits sys.path). Its
# entry points run as `python3 -m kernels.torch.executor_main|dcp_export|llama_slice|probe` with the directory that
# holds `kernels/` on PYTHONPATH; on a node that is the uploaded bundle's root (orchestrator/cluster/bootstrap.ts).
