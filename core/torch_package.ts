// How a Python entry point of the PyTorch executor package (kernels/torch, imported as `kernels.torch`) is started:
// `python3 -m kernels.torch.<module>` with the directory holding `kernels/` first on PYTHONPATH. The package imports
// itself relatively and edits no sys.path; its folder name alone could not be the import name (it is PyTorch's).

/** The import name of the package, and its folder below the root (in the repository and in an uploaded bundle). */
export const TORCH_PACKAGE_MODULE = "kernels.torch";
export const TORCH_PACKAGE_PATH = "kernels/torch";

/** The directory to put on PYTHONPATH for the package at `packageDir` (which ends in `kernels/torch`). */
export function torchPackageRoot(packageDir: string): string {
  const dir = packageDir.replace(/\/+$/, "");
  if (!dir.endsWith(`/${TORCH_PACKAGE_PATH}`)) {
    throw new Error(
      `torch package directory ${packageDir} does not end in ${TORCH_PACKAGE_PATH} (it runs as ${TORCH_PACKAGE_MODULE})`,
    );
  }
  return dir.slice(0, -TORCH_PACKAGE_PATH.length - 1) || "/";
}

/**
 * The arguments and environment that run `module` of the package at `packageDir` (`inheritedPath`: the PYTHONPATH
 * the process would otherwise get, kept after the root). PYTHONSAFEPATH keeps the working directory off sys.path
 * (Python 3.11+), so another checkout's `kernels/` there is never imported instead.
 */
export function torchModuleCommand(
  packageDir: string,
  module: string,
  inheritedPath?: string,
): { args: string[]; env: Record<string, string> } {
  const root = torchPackageRoot(packageDir);
  return {
    args: ["-m", `${TORCH_PACKAGE_MODULE}.${module}`],
    env: { PYTHONPATH: inheritedPath ? `${root}:${inheritedPath}` : root, PYTHONSAFEPATH: "1" },
  };
}
