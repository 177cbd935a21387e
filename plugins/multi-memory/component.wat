;; multi-memory (processor, hostile): spreads its memory over four linear
;; memories of four core instances, 12 MiB each, then accepts the upload.
;;
;; No single memory ever reaches 16 MiB, but together they hold 48 MiB. A
;; host that checks `memory_bytes` per memory lets it through; the budget is
;; for the whole invocation, so the host must sum every memory of every core
;; instance: under `memory_bytes = 16 MiB` it is stopped with
;; `BudgetExceeded { limit: Memory }`, under 64 MiB it runs and reports a
;; peak of at least 48 MiB.
;;
;; Hand-written (one memory per core instance, the most the instance pool
;; allows per module); built into plugins/dist/multi-memory.wasm by
;; `wasm-tools parse`.
(component
  ;; The contract's shared types, as the processor world imports them.
  (import "airlock:plugin/types@0.1.0" (instance $types
    (type $upload-def (record
      (field "id" string)
      (field "client" string)
      (field "filename" string)
      (field "content-type" string)
      (field "size" u64)
      (field "metadata" (list (tuple string string)))))
    (export "upload" (type $upload (eq $upload-def)))
    (export "content" (type $content (sub resource)))
    (type $plugin-error-def (record (field "message" string)))
    (export "plugin-error" (type $plugin-error (eq $plugin-error-def)))
    (type $replacement-def (record
      (field "bytes" (list u8))
      (field "content-type" string)
      (field "metadata" (list (tuple string string)))))
    (export "replacement" (type $replacement (eq $replacement-def)))
    (type $verdict-def (variant
      (case "accept" (list (tuple string string)))
      (case "reject" string)
      (case "replace" $replacement)))
    (export "verdict" (type $verdict (eq $verdict-def)))
  ))
  (alias export $types "upload" (type $upload))
  (alias export $types "content" (type $content))
  (alias export $types "plugin-error" (type $plugin-error))
  (alias export $types "verdict" (type $verdict))

  ;; Memory 1: the one the host passes the arguments in.
  (core module $mem
    (memory (export "memory") 1)
    ;; Bump allocator for the host's argument copies; never frees.
    (global $heap (mut i32) (i32.const 1024))
    (func (export "cabi_realloc")
      (param $old i32) (param $old-size i32) (param $align i32) (param $size i32)
      (result i32)
      (local $ptr i32) (local $end i32)
      (local.set $ptr
        (i32.and
          (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
          (i32.sub (i32.const 0) (local.get $align))))
      (local.set $end (i32.add (local.get $ptr) (local.get $size)))
      (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
        (then
          (if (i32.eq
                (memory.grow
                  (i32.shr_u
                    (i32.sub
                      (i32.add (local.get $end) (i32.const 65535))
                      (i32.mul (memory.size) (i32.const 65536)))
                    (i32.const 16)))
                (i32.const -1))
            (then unreachable))))
      (global.set $heap (local.get $end))
      (local.get $ptr)))
  (core instance $mem (instantiate $mem))
  (alias core export $mem "memory" (core memory $memory))
  (alias core export $mem "cabi_realloc" (core func $realloc))

  ;; Memories 2 to 4: a module with a one-page memory of its own and a
  ;; function that grows it to 12 MiB (192 pages), instantiated three times.
  (core module $grower
    (memory 1)
    (func (export "grow")
      (if (i32.eq (memory.grow (i32.sub (i32.const 192) (memory.size))) (i32.const -1))
        (then unreachable))
      ;; Touch the last page so the memory is really used.
      (i32.store8 (i32.const 12582911) (i32.const 1))))
  (core instance $g2 (instantiate $grower))
  (core instance $g3 (instantiate $grower))
  (core instance $g4 (instantiate $grower))

  (core func $drop-content (canon resource.drop $content))

  (core module $plugin
    (import "env" "memory" (memory 1))
    (import "env" "drop-content" (func $drop-content (param i32)))
    (import "g2" "grow" (func $grow2))
    (import "g3" "grow" (func $grow3))
    (import "g4" "grow" (func $grow4))
    ;; process(upload: 4 strings, size, metadata list, content handle).
    ;; Returns a pointer to result<verdict, plugin-error>; the zeroed bytes at
    ;; address 16 read as ok(accept([])).
    (func (export "process")
      (param i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32 i32)
      (result i32)
      (call $drop-content (local.get 11))
      (call $grow2)
      (call $grow3)
      (call $grow4)
      (if (i32.eq (memory.grow (i32.sub (i32.const 192) (memory.size))) (i32.const -1))
        (then unreachable))
      (i32.store8 (i32.const 12582911) (i32.const 1))
      (i64.store (i32.const 16) (i64.const 0))
      (i64.store (i32.const 24) (i64.const 0))
      (i32.const 16)))
  (core instance $main (instantiate $plugin
    (with "env" (instance
      (export "memory" (memory $memory))
      (export "drop-content" (func $drop-content))))
    (with "g2" (instance $g2))
    (with "g3" (instance $g3))
    (with "g4" (instance $g4))))

  (type $process-type (func
    (param "upload" $upload)
    (param "content" (borrow $content))
    (result (result $verdict (error $plugin-error)))))
  (func $process (type $process-type)
    (canon lift (core func $main "process") (memory $memory) (realloc $realloc)))

  (instance $pre-store (export "process" (func $process)))
  (export "airlock:plugin/pre-store@0.1.0" (instance $pre-store))
)
