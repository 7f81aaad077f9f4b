// Shared WGSL snippets: the 1-D workgroup size of element-parallel kernels and the entry-point header that turns
// a 2-D grid of workgroups (needed past 65535 workgroups) back into one linear invocation index.

/** Invocations per workgroup of the element-parallel (1-D) kernels. */
export const WG = 64;

/**
 * WGSL entry-point signature plus a prologue defining `i`, the linear invocation index over a 2-D grid of
 * {@link WG}-wide workgroups. The caller closes the function body.
 */
export const LINEAR_MAIN = `@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid_: vec3<u32>, @builtin(num_workgroups) nwg_: vec3<u32>,
        @builtin(local_invocation_index) lii_: u32) {
  let i = (wid_.y * nwg_.x + wid_.x) * ${WG}u + lii_;`;
