;; derived-flood (extension, hostile): returns 5,000 empty derived artifacts
;; for every stored upload.
;;
;; 120,000 bytes of zeroed linear memory read as 5,000 `derived` records
;; whose name, content type and bytes are all empty. Each artifact would be
;; a stored object beside the upload; the host must count them first and
;; stop the invocation with `BudgetExceeded { limit: DerivedArtifacts,
;; used: 5000 }` before it copies any of them.
;;
;; Hand-written; built into plugins/dist/derived-flood.wasm by
;; `wasm-tools parse`.
(component
  ;; The contract's shared types, as the extension world imports them.
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
    (type $derived-def (record
      (field "name" string)
      (field "content-type" string)
      (field "bytes" (list u8))))
    (export "derived" (type $derived (eq $derived-def)))
  ))
  (alias export $types "upload" (type $upload))
  (alias export $types "content" (type $content))
  (alias export $types "plugin-error" (type $plugin-error))
  (alias export $types "derived" (type $derived))

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

  ;; The borrowed `content` handle must be dropped before `on-stored` returns.
  (core func $drop-content (canon resource.drop $content))

  (core module $plugin
    (import "env" "memory" (memory 1))
    (import "env" "drop-content" (func $drop-content (param i32)))
    ;; on-stored(upload: 4 strings, size, metadata list, content handle).
    ;; Returns a pointer to result<list<derived>, plugin-error>:
    ;;   +0 u8 result case (0 = ok)   +4 i32 list pointer   +8 i32 list length
    (func (export "on-stored")
      (param i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32 i32)
      (result i32)
      (local $items i32)
      (call $drop-content (local.get 11))
      ;; 5,000 records of 24 bytes at the current end of memory, in 2 new
      ;; (zeroed) pages.
      (local.set $items (i32.mul (memory.size) (i32.const 65536)))
      (if (i32.eq (memory.grow (i32.const 2)) (i32.const -1))
        (then unreachable))
      (i32.store8 (i32.const 16) (i32.const 0))
      (i32.store (i32.const 20) (local.get $items))
      (i32.store (i32.const 24) (i32.const 5000))
      (i32.const 16)))
  (core instance $main (instantiate $plugin
    (with "env" (instance
      (export "memory" (memory $memory))
      (export "drop-content" (func $drop-content))))))

  (type $on-stored-type (func
    (param "upload" $upload)
    (param "content" (borrow $content))
    (result (result (list $derived) (error $plugin-error)))))
  (func $on-stored (type $on-stored-type)
    (canon lift (core func $main "on-stored") (memory $memory) (realloc $realloc)))

  (instance $post-store (export "on-stored" (func $on-stored)))
  (export "airlock:plugin/post-store@0.1.0" (instance $post-store))
)
