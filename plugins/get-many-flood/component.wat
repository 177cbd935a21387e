;; get-many-flood (processor, hostile): calls `cache.get-many` with 65 keys,
;; one more than a batch may hold, in an endless loop.
;;
;; Every call is refused (`too-large`) without touching the cache, so a host
;; that charges only the calls it carries out lets the plugin hammer it until
;; fuel or time runs out. A refused call still costs one `cache_calls` per
;; key asked for: the plugin must be stopped with `BudgetExceeded { limit:
;; CacheCalls }` after a few calls, not by a timeout.
;;
;; Hand-written; built into plugins/dist/get-many-flood.wasm by
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

  ;; The cache interface, with only the function this plugin calls.
  (import "airlock:plugin/cache@0.1.0" (instance $cache
    (type $error-def (variant
      (case "quota-exceeded")
      (case "too-large")
      (case "invalid-key")
      (case "unavailable")))
    (export "error" (type $error (eq $error-def)))
    (export "get-many" (func (param "keys" (list string))
      (result (result (list (option (list u8))) (error $error)))))
  ))
  (alias export $cache "get-many" (func $get-many))

  ;; Linear memory and the allocator the host uses to pass values in.
  (core module $mem
    (memory (export "memory") 1)
    ;; Bump allocator for the host's copies; never frees.
    (global $heap (mut i32) (i32.const 4096))
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

  (core func $drop-content (canon resource.drop $content))
  ;; get-many(keys) lowered: (keys pointer, keys length, result pointer).
  (core func $get-many-lowered
    (canon lower (func $get-many) (memory $memory) (realloc $realloc)))

  (core module $plugin
    (import "env" "memory" (memory 1))
    (import "env" "drop-content" (func $drop-content (param i32)))
    (import "env" "get-many" (func $get-many (param i32 i32 i32)))
    ;; The key "k" at address 64.
    (data (i32.const 64) "k")
    (func (export "process")
      (param i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32 i32)
      (result i32)
      (local $i i32)
      (call $drop-content (local.get 11))
      ;; 65 list<string> entries (pointer 64, length 1) at address 1024.
      (loop $fill
        (i32.store (i32.add (i32.const 1024) (i32.mul (local.get $i) (i32.const 8)))
          (i32.const 64))
        (i32.store (i32.add (i32.const 1028) (i32.mul (local.get $i) (i32.const 8)))
          (i32.const 1))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $fill (i32.lt_u (local.get $i) (i32.const 65))))
      ;; Ask again and again; the answer (at address 256) is never looked at.
      (loop $flood
        (call $get-many (i32.const 1024) (i32.const 65) (i32.const 256))
        (br $flood))
      unreachable))
  (core instance $main (instantiate $plugin
    (with "env" (instance
      (export "memory" (memory $memory))
      (export "drop-content" (func $drop-content))
      (export "get-many" (func $get-many-lowered))))))

  (type $process-type (func
    (param "upload" $upload)
    (param "content" (borrow $content))
    (result (result $verdict (error $plugin-error)))))
  (func $process (type $process-type)
    (canon lift (core func $main "process") (memory $memory) (realloc $realloc)))

  (instance $pre-store (export "process" (func $process)))
  (export "airlock:plugin/pre-store@0.1.0" (instance $pre-store))
)
