
// Runs the relaxed-SIMD probe (scripts/relaxed-probe.wat, compiled as `module`) in a fresh
// instance and checks its answer against the same sums computed here.
function relaxedProbeComputesRight(module) {
  const { set, probe } = new WebAssembly.Instance(module).exports;
  const a = Array.from({ length: 16 }, (_, i) => ((i * 37) % 255) - 127);
  const b = Array.from({ length: 16 }, (_, i) => (i * 11) % 64);
  const acc = [1000, 2000, 3000, 4000];
  a.forEach((v, i) => set(i, v));
  b.forEach((v, i) => set(16 + i, v));
  acc.forEach((v, i) => { for (let k = 0; k < 4; k++) set(32 + 4 * i + k, (v >> (8 * k)) & 255); });
  const lane = (l) => [0, 1, 2, 3].reduce((s, k) => s + a[4 * l + k] * b[4 * l + k], 0) + acc[l];
  return probe() === 4 * (lane(0) + lane(3));
}
