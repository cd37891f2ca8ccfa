
// --- Wasm build selection (appended to the bundle by scripts/build-worker.sh) ----------------
// The worker bundles two builds of the same code, index_bg.wasm (simd128) and
// index_relaxed_bg.wasm (simd128 + relaxed SIMD, whose coarse pass scans faster), and the
// relaxed-SIMD probe (scripts/relaxed-probe.wat). Workers compile wasm only from the modules
// uploaded with the script, so all three are imports, and a runtime without relaxed SIMD would
// refuse the bundle at upload (workerd has had it since V8 11.4); the probe guards against an
// implementation that validates relaxed SIMD but computes it wrongly.
function edgerecPickWasm() {
  try {
    return relaxedProbeComputesRight(edgerecRelaxedProbe) ? edgerecWasmRelaxed : edgerecWasmSimd128;
  } catch {
    return edgerecWasmSimd128;
  }
}
