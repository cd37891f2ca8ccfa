
// --- Wasm build selection (appended to the generated glue by scripts/build-pkg.sh) -----------
// The package ships two builds of the same code: edgerec_bg.wasm (simd128) and
// edgerec_relaxed_bg.wasm (simd128 + relaxed SIMD, whose coarse pass scans faster). Rankings
// are identical; the relaxed build is chosen where the engine validates relaxed SIMD and a probe
// (scripts/relaxed-probe.wat) computes the right sums with it.
const RELAXED_PROBE = '@RELAXED_PROBE_BASE64@';

function relaxedSimdWorks() {
  try {
    const bytes = Uint8Array.from(atob(RELAXED_PROBE), (c) => c.charCodeAt(0));
    return WebAssembly.validate(bytes) && relaxedProbeComputesRight(new WebAssembly.Module(bytes));
  } catch {
    return false;
  }
}

let selectedWasm;

/**
 * The file name of the wasm build for this engine: 'edgerec_relaxed_bg.wasm' where relaxed SIMD
 * is available and computes correctly, otherwise 'edgerec_bg.wasm'. The default `init()` loads
 * it; in Node pass its bytes to `initSync({ module })`.
 */
export function wasmFileName() {
  selectedWasm ??= relaxedSimdWorks() ? 'edgerec_relaxed_bg.wasm' : 'edgerec_bg.wasm';
  return selectedWasm;
}
