;; log-forge (processor, hostile): tries to write log lines of its own
;; invention into the host's logs, then accepts the upload.
;;
;; It logs, at info level, messages with a newline, a carriage return and
;; terminal escape sequences followed by text shaped like a line of the
;; host's own log:
;;
;;   "done\n2026-01-01T00:00:00Z ERROR airlock::admin: fake admin token rotated"
;;   "done\r2026-01-01T00:00:00Z ERROR airlock::admin: fake carriage return"
;;   "done\1b[2K\1b[1G2026-01-01T00:00:00Z ERROR airlock::admin: fake escape"
;;
;; Whatever the log format, the host must write each as one line, with the
;; control characters escaped and the text inside the line's message: no
;; line of the host's output may start with the forged text.
;;
;; Hand-written; built into plugins/dist/log-forge.wasm by `wasm-tools parse`.
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

  ;; The log interface.
  (import "airlock:plugin/log@0.1.0" (instance $log
    (type $level-def (enum "trace" "debug" "info" "warn" "error"))
    (export "level" (type $level (eq $level-def)))
    (export "write" (func (param "level" $level) (param "message" string)))
  ))
  (alias export $log "write" (func $log-write))

  ;; Linear memory and the allocator the host uses to pass the arguments in.
  (core module $mem
    (memory (export "memory") 1)
    ;; Bump allocator for the host's argument copies; never frees.
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
  ;; write(level, message) lowered: (level, message pointer, message length).
  (core func $log-lowered (canon lower (func $log-write) (memory $memory)))

  (core module $plugin
    (import "env" "memory" (memory 1))
    (import "env" "drop-content" (func $drop-content (param i32)))
    (import "env" "log" (func $log (param i32 i32 i32)))
    ;; 72 bytes.
    (data (i32.const 1024)
      "done\n2026-01-01T00:00:00Z ERROR airlock::admin: fake admin token rotated")
    ;; 68 bytes.
    (data (i32.const 1280)
      "done\r2026-01-01T00:00:00Z ERROR airlock::admin: fake carriage return")
    ;; 66 bytes.
    (data (i32.const 1536)
      "done\1b[2K\1b[1G2026-01-01T00:00:00Z ERROR airlock::admin: fake escape")
    (func (export "process")
      (param i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32 i32)
      (result i32)
      (call $drop-content (local.get 11))
      ;; Level 2 is `info`.
      (call $log (i32.const 2) (i32.const 1024) (i32.const 72))
      (call $log (i32.const 2) (i32.const 1280) (i32.const 68))
      (call $log (i32.const 2) (i32.const 1536) (i32.const 66))
      ;; ok(accept([])).
      (i64.store (i32.const 16) (i64.const 0))
      (i64.store (i32.const 24) (i64.const 0))
      (i32.const 16)))
  (core instance $main (instantiate $plugin
    (with "env" (instance
      (export "memory" (memory $memory))
      (export "drop-content" (func $drop-content))
      (export "log" (func $log-lowered))))))

  (type $process-type (func
    (param "upload" $upload)
    (param "content" (borrow $content))
    (result (result $verdict (error $plugin-error)))))
  (func $process (type $process-type)
    (canon lift (core func $main "process") (memory $memory) (realloc $realloc)))

  (instance $pre-store (export "process" (func $process)))
  (export "airlock:plugin/pre-store@0.1.0" (instance $pre-store))
)
