;; bad-handle (processor, hostile): calls `content.read` on a handle it
;; made up.
;;
;; The host lends the plugin its `content` as handle 1; the plugin passes
;; 1234 instead, a handle it was never given. The call must fail inside the
;; sandbox, as `Crashed { crash: BadHandle }`, and never reach the host's
;; own tables or be reported as a host failure.
;;
;; Hand-written (no toolchain emits a forged handle); built into
;; plugins/dist/bad-handle.wasm by `wasm-tools parse`.
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
    (export "[method]content.read" (func
      (param "self" (borrow $content)) (param "offset" u64) (param "len" u32)
      (result (list u8))))
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
  (alias export $types "[method]content.read" (func $content-read))

  ;; Linear memory and the allocator the host uses to pass the arguments in,
  ;; in their own instance so that the canonical functions below can use them.
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

  (core func $drop-content (canon resource.drop $content))
  ;; read(self, offset, len) lowered: (handle, offset, len, result pointer).
  (core func $read-lowered
    (canon lower (func $content-read) (memory $memory) (realloc $realloc)))

  (core module $plugin
    (import "env" "memory" (memory 1))
    (import "env" "drop-content" (func $drop-content (param i32)))
    (import "env" "read" (func $read (param i32 i64 i32 i32)))
    (func (export "process")
      (param i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32 i32)
      (result i32)
      ;; Read 16 bytes at offset 0 through handle 1234 instead of the
      ;; handle in parameter 11; the list would land at address 256.
      (call $read (i32.const 1234) (i64.const 0) (i32.const 16) (i32.const 256))
      ;; Not reached: give the real handle back and accept.
      (call $drop-content (local.get 11))
      (i64.store (i32.const 16) (i64.const 0))
      (i64.store (i32.const 24) (i64.const 0))
      (i32.const 16)))
  (core instance $main (instantiate $plugin
    (with "env" (instance
      (export "memory" (memory $memory))
      (export "drop-content" (func $drop-content))
      (export "read" (func $read-lowered))))))

  (type $process-type (func
    (param "upload" $upload)
    (param "content" (borrow $content))
    (result (result $verdict (error $plugin-error)))))
  (func $process (type $process-type)
    (canon lift (core func $main "process") (memory $memory) (realloc $realloc)))

  (instance $pre-store (export "process" (func $process)))
  (export "airlock:plugin/pre-store@0.1.0" (instance $pre-store))
)
