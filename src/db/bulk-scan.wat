;; The bulk text gate's fast path (see bulk-gate.ts and bulk-scan.ts):
;; checks rows of bulk text 16 bytes at a time with WebAssembly SIMD.
;;
;; Compiled by `node scripts/build-wasm.mjs` into bulk-scan-wasm.ts (the
;; bytes, base64), which is what runs; a unit test compiles this file again
;; and checks that the two agree.
;;
;; Memory: bytes 0-255 and 256-511 are the escape tables of the two
;; dialects (per escape letter: 1 passed on as it is, 2 the NULL marker N,
;; 0 the caller decides: a rewrite or an error); the text to scan is copied
;; from byte 1024 on, at most 1 MiB at a time.
;;
;; `scan` walks [i, end) and stops at the first byte that the caller must
;; handle itself, returning its position (or `end`):
;; - a TAB that would make a field too many, an LF ending a row with too
;;   few fields (the caller raises the error);
;; - a backslash whose escape is not one passed on as it is, or `\N` that
;;   does not start a field or is not followed by TAB or LF, or any
;;   backslash less than 3 bytes from `end` (the caller has the bytes after
;;   it, or holds it for the next chunk).
;; Everything else it takes itself, keeping in globals what the caller's
;; byte loop keeps: TABs in the current row, rows ended, where the current
;; field and row started.
(module
  (memory (export "memory") 18)
  (global $tabs (export "tabs") (mut i32) (i32.const 0))
  (global $rows (export "rows") (mut i32) (i32.const 0))
  (global $fieldStart (export "fieldStart") (mut i32) (i32.const 0))
  (global $rowStart (export "rowStart") (mut i32) (i32.const 0))

  ;; The backslash at $p: the position after its escape, or $p if the caller must handle it.
  (func $escape (param $p i32) (param $end i32) (param $table i32) (result i32)
    (local $what i32) (local $next i32)
    (if (i32.ge_u (i32.add (local.get $p) (i32.const 2)) (local.get $end)) (then (return (local.get $p))))
    (local.set $what (i32.load8_u (i32.add (local.get $table) (i32.load8_u (i32.add (local.get $p) (i32.const 1))))))
    (if (i32.eq (local.get $what) (i32.const 1)) (then (return (i32.add (local.get $p) (i32.const 2)))))
    (if (i32.eq (local.get $what) (i32.const 2))
      (then
        (if (i32.ne (global.get $fieldStart) (local.get $p)) (then (return (local.get $p))))
        (local.set $next (i32.load8_u (i32.add (local.get $p) (i32.const 2))))
        (if (i32.or (i32.eq (local.get $next) (i32.const 9)) (i32.eq (local.get $next) (i32.const 10)))
          (then (return (i32.add (local.get $p) (i32.const 2)))))))
    (local.get $p))

  ;; The TAB, LF or backslash at $p: the position after what it took, or $p if the caller must handle it.
  (func $special (param $p i32) (param $end i32) (param $columns i32) (param $table i32) (result i32)
    (local $c i32)
    (local.set $c (i32.load8_u (local.get $p)))
    (if (i32.eq (local.get $c) (i32.const 9))
      (then
        (if (i32.ge_u (i32.add (global.get $tabs) (i32.const 1)) (local.get $columns)) (then (return (local.get $p))))
        (global.set $tabs (i32.add (global.get $tabs) (i32.const 1)))
        (global.set $fieldStart (i32.add (local.get $p) (i32.const 1)))
        (return (i32.add (local.get $p) (i32.const 1)))))
    (if (i32.eq (local.get $c) (i32.const 10))
      (then
        (if (i32.ne (i32.add (global.get $tabs) (i32.const 1)) (local.get $columns)) (then (return (local.get $p))))
        (global.set $rows (i32.add (global.get $rows) (i32.const 1)))
        (global.set $tabs (i32.const 0))
        (global.set $fieldStart (i32.add (local.get $p) (i32.const 1)))
        (global.set $rowStart (i32.add (local.get $p) (i32.const 1)))
        (return (i32.add (local.get $p) (i32.const 1)))))
    (call $escape (local.get $p) (local.get $end) (local.get $table)))

  (func (export "scan") (param $i i32) (param $end i32) (param $columns i32) (param $table i32) (result i32)
    (local $v v128) (local $mask i32) (local $base i32) (local $p i32) (local $next i32) (local $c i32)
    (block $stop
      (loop $block
        (if (i32.le_u (i32.add (local.get $i) (i32.const 16)) (local.get $end))
          (then
            ;; 16 bytes: a bit per TAB, LF or backslash.
            (local.set $v (v128.load align=1 (local.get $i)))
            (local.set $mask (i8x16.bitmask (v128.or (v128.or
              (i8x16.eq (local.get $v) (i8x16.splat (i32.const 9)))
              (i8x16.eq (local.get $v) (i8x16.splat (i32.const 10))))
              (i8x16.eq (local.get $v) (i8x16.splat (i32.const 92))))))
            (if (i32.eqz (local.get $mask))
              (then
                (local.set $i (i32.add (local.get $i) (i32.const 16)))
                (br $block)))
            (local.set $base (local.get $i))
            (loop $bits
              (local.set $p (i32.add (local.get $base) (i32.ctz (local.get $mask))))
              (local.set $next (call $special (local.get $p) (local.get $end) (local.get $columns) (local.get $table)))
              (if (i32.eq (local.get $next) (local.get $p))
                (then
                  (local.set $i (local.get $p))
                  (br $stop)))
              ;; An escape took the byte after the backslash too: go on after it.
              (if (i32.gt_u (local.get $next) (i32.add (local.get $p) (i32.const 1)))
                (then
                  (local.set $i (local.get $next))
                  (br $block)))
              (local.set $mask (i32.and (local.get $mask) (i32.sub (local.get $mask) (i32.const 1))))
              (br_if $bits (local.get $mask)))
            (local.set $i (i32.add (local.get $base) (i32.const 16)))
            (br $block)))
        ;; Fewer than 16 bytes left: one at a time.
        (if (i32.ge_u (local.get $i) (local.get $end)) (then (br $stop)))
        (local.set $c (i32.load8_u (local.get $i)))
        (if (i32.and
              (i32.and (i32.ne (local.get $c) (i32.const 9)) (i32.ne (local.get $c) (i32.const 10)))
              (i32.ne (local.get $c) (i32.const 92)))
          (then
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $block)))
        (local.set $next (call $special (local.get $i) (local.get $end) (local.get $columns) (local.get $table)))
        (if (i32.eq (local.get $next) (local.get $i)) (then (br $stop)))
        (local.set $i (local.get $next))
        (br $block)))
    (local.get $i))
)
