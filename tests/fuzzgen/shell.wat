;; The fixed `processor`-world shell of the sandbox fuzzer (tests/fuzzgen).
;;
;; `process` calls `run` of a generated core module, then returns
;; ok(accept([])). The generated module takes the place of `$generated` below
;; (the fuzzer swaps that core-module section's bytes for wasm-smith output).
;; It may import, from "host", what `$env` and the lowered host functions
;; provide: the memory the host functions read and write through, a table, the
;; content handle of the current call, a no-op, and six host calls
;; (log.write, content.size, content.read, cache.get, cache.set, and the
;; content handle's drop), so random code also calls the host with random
;; pointers, lengths and handles.
(component
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
    (export "[method]content.size" (func (param "self" (borrow $content)) (result u64)))
    (export "[method]content.read"
      (func (param "self" (borrow $content)) (param "offset" u64) (param "len" u32)
        (result (list u8))))
  ))
  (alias export $types "upload" (type $upload))
  (alias export $types "content" (type $content))
  (alias export $types "plugin-error" (type $plugin-error))
  (alias export $types "verdict" (type $verdict))

  (import "airlock:plugin/log@0.1.0" (instance $log
    (type $level-def (enum "trace" "debug" "info" "warn" "error"))
    (export "level" (type $level (eq $level-def)))
    (export "write" (func (param "level" $level) (param "message" string)))
  ))
  (import "airlock:plugin/cache@0.1.0" (instance $cache
    (type $error-def (variant
      (case "quota-exceeded")
      (case "too-large")
      (case "invalid-key")
      (case "unavailable")))
    (export "error" (type $error (eq $error-def)))
    (export "get" (func (param "key" string) (result (result (option (list u8)) (error $error)))))
    (export "set"
      (func (param "key" string) (param "value" (list u8)) (param "ttl-seconds" u32)
        (result (result (error $error)))))
  ))
  (alias export $types "[method]content.size" (func $content-size))
  (alias export $types "[method]content.read" (func $content-read))
  (alias export $log "write" (func $log-write))
  (alias export $cache "get" (func $cache-get))
  (alias export $cache "set" (func $cache-set))

  ;; The state shared by the shell and the generated module.
  (core module $env
    (memory (export "memory") 1)
    (table (export "table") 4 funcref)
    (global (export "handle") (mut i32) (i32.const 0))
    (func (export "nop"))
    ;; Bump allocator for the host's copies into guest memory; never frees.
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
      (local.get $ptr))
  )
  (core instance $env (instantiate $env))
  (alias core export $env "memory" (core memory $memory))
  (alias core export $env "table" (core table $table))
  (alias core export $env "handle" (core global $handle))
  (alias core export $env "nop" (core func $nop))
  (alias core export $env "cabi_realloc" (core func $realloc))

  (core func $log-write-lowered (canon lower (func $log-write) (memory $memory)))
  (core func $content-size-lowered (canon lower (func $content-size)))
  (core func $content-read-lowered
    (canon lower (func $content-read) (memory $memory) (realloc $realloc)))
  (core func $cache-get-lowered
    (canon lower (func $cache-get) (memory $memory) (realloc $realloc)))
  (core func $cache-set-lowered (canon lower (func $cache-set) (memory $memory)))
  (core func $drop-content (canon resource.drop $content))
  (core instance $host
    (export "memory" (memory $memory))
    (export "table" (table $table))
    (export "handle" (global $handle))
    (export "nop" (func $nop))
    (export "log" (func $log-write-lowered))
    (export "content-size" (func $content-size-lowered))
    (export "content-read" (func $content-read-lowered))
    (export "cache-get" (func $cache-get-lowered))
    (export "cache-set" (func $cache-set-lowered))
    (export "drop-content" (func $drop-content)))

  ;; Placeholder: replaced by the generated module, which must export
  ;; `run: [] -> []` and may import only from "host" (see above).
  (core module $generated (func (export "run")))
  (core instance $fuzz (instantiate $generated (with "host" (instance $host))))

  (core module $main
    (import "env" "memory" (memory 1))
    (import "env" "handle" (global $handle (mut i32)))
    (import "fuzz" "run" (func $run))
    (import "host" "drop-content" (func $drop-content (param i32)))
    ;; process(upload: 4 strings, size, metadata list, content handle).
    (func (export "process")
      (param i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32 i32)
      (result i32)
      (global.set $handle (local.get 11))
      (call $run)
      ;; A borrowed handle must be dropped before returning.
      (call $drop-content (local.get 11))
      ;; The generated code shares this memory: zero the 32-byte return
      ;; area again, so it reads as ok(accept([])).
      (i64.store (i32.const 16) (i64.const 0))
      (i64.store (i32.const 24) (i64.const 0))
      (i64.store (i32.const 32) (i64.const 0))
      (i64.store (i32.const 40) (i64.const 0))
      (i32.const 16))
  )
  (core instance $main (instantiate $main
    (with "env" (instance $env))
    (with "host" (instance $host))
    (with "fuzz" (instance $fuzz))))

  (type $process-type (func
    (param "upload" $upload)
    (param "content" (borrow $content))
    (result (result $verdict (error $plugin-error)))))
  (func $process (type $process-type)
    (canon lift (core func $main "process") (memory $memory) (realloc $realloc)))

  (instance $pre-store (export "process" (func $process)))
  (export "airlock:plugin/pre-store@0.1.0" (instance $pre-store))
)
