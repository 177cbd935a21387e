;; table-flood (processor, hostile): grows the tables of eight core
;; instances to 15,000 elements each, then accepts the upload.
;;
;; Each table stays far below the 100,000 elements a host might allow per
;; table, but together they hold 120,000: host memory the budget does not
;; see as linear memory. `table_elements` is summed over every table of the
;; invocation, so under the default budget the host must stop it with
;; `BudgetExceeded { limit: TableElements }`; with `table_elements =
;; 200000` it runs.
;;
;; Hand-written (one table per core instance, the most the instance pool
;; allows per module); built into plugins/dist/table-flood.wasm by
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

  ;; Linear memory and the allocator the host uses to pass the arguments in.
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

  ;; A module with an empty table and a function that grows it by 15,000
  ;; null references, instantiated eight times.
  (core module $grower
    (table 0 funcref)
    (func (export "grow")
      (if (i32.eq (table.grow (ref.null func) (i32.const 15000)) (i32.const -1))
        (then unreachable))))
  (core instance $t1 (instantiate $grower))
  (core instance $t2 (instantiate $grower))
  (core instance $t3 (instantiate $grower))
  (core instance $t4 (instantiate $grower))
  (core instance $t5 (instantiate $grower))
  (core instance $t6 (instantiate $grower))
  (core instance $t7 (instantiate $grower))
  (core instance $t8 (instantiate $grower))

  (core func $drop-content (canon resource.drop $content))

  (core module $plugin
    (import "env" "memory" (memory 1))
    (import "env" "drop-content" (func $drop-content (param i32)))
    (import "t1" "grow" (func $grow1))
    (import "t2" "grow" (func $grow2))
    (import "t3" "grow" (func $grow3))
    (import "t4" "grow" (func $grow4))
    (import "t5" "grow" (func $grow5))
    (import "t6" "grow" (func $grow6))
    (import "t7" "grow" (func $grow7))
    (import "t8" "grow" (func $grow8))
    ;; process(upload: 4 strings, size, metadata list, content handle).
    ;; Returns a pointer to result<verdict, plugin-error>; the zeroed bytes at
    ;; address 16 read as ok(accept([])).
    (func (export "process")
      (param i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32 i32)
      (result i32)
      (call $drop-content (local.get 11))
      (call $grow1)
      (call $grow2)
      (call $grow3)
      (call $grow4)
      (call $grow5)
      (call $grow6)
      (call $grow7)
      (call $grow8)
      (i64.store (i32.const 16) (i64.const 0))
      (i64.store (i32.const 24) (i64.const 0))
      (i32.const 16)))
  (core instance $main (instantiate $plugin
    (with "env" (instance
      (export "memory" (memory $memory))
      (export "drop-content" (func $drop-content))))
    (with "t1" (instance $t1))
    (with "t2" (instance $t2))
    (with "t3" (instance $t3))
    (with "t4" (instance $t4))
    (with "t5" (instance $t5))
    (with "t6" (instance $t6))
    (with "t7" (instance $t7))
    (with "t8" (instance $t8))))

  (type $process-type (func
    (param "upload" $upload)
    (param "content" (borrow $content))
    (result (result $verdict (error $plugin-error)))))
  (func $process (type $process-type)
    (canon lift (core func $main "process") (memory $memory) (realloc $realloc)))

  (instance $pre-store (export "process" (func $process)))
  (export "airlock:plugin/pre-store@0.1.0" (instance $pre-store))
)
