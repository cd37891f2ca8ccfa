;; The probe the package runs before choosing its relaxed-SIMD build (scripts/pkg-select-wasm.js):
;; both forms of the relaxed dot product the kernels may use, on operands loaded from memory.
;; An engine that cannot validate this has no relaxed SIMD; one that validates it but returns
;; the wrong sum has a broken implementation (Node 20's V8 11.3 behind
;; --experimental-wasm-relaxed-simd computes the accumulating form wrongly in its baseline
;; compiler), and gets the simd128 build too.
;;
;; Bytes 0..16: signed i8 operand; 16..32: 7-bit operand; 32..48: i32x4 accumulator, written by
;; the caller through `set`. `probe` returns (lane 0 + lane 3) of the accumulating form plus 3 ×
;; (lane 0 + lane 3) of the 16-bit form widened and added to the accumulator.
(module
  (memory 1)
  (func (export "set") (param $at i32) (param $v i32)
    (i32.store8 (local.get $at) (local.get $v)))
  (func (export "probe") (result i32) (local $r v128) (local $s v128)
    (local.set $r
      (i32x4.relaxed_dot_i8x16_i7x16_add_s
        (v128.load (i32.const 0)) (v128.load (i32.const 16)) (v128.load (i32.const 32))))
    (local.set $s
      (i32x4.add
        (v128.load (i32.const 32))
        (i32x4.extadd_pairwise_i16x8_s
          (i16x8.relaxed_dot_i8x16_i7x16_s (v128.load (i32.const 0)) (v128.load (i32.const 16))))))
    (i32.add
      (i32.add (i32x4.extract_lane 0 (local.get $r)) (i32x4.extract_lane 3 (local.get $r)))
      (i32.mul
        (i32.const 3)
        (i32.add (i32x4.extract_lane 0 (local.get $s)) (i32x4.extract_lane 3 (local.get $s))))))
)
