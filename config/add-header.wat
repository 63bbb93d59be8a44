;; add-header: the example proxy-wasm filter shipped with xds-server.
;;
;; On every HTTP response it adds
;;     x-wasm-filter: add-header
;; and, when the plugin has a non-empty configuration (the `configuration` field of the
;; Wasm filter config, e.g. a google.protobuf.StringValue), also
;;     x-wasm-config: <the configuration bytes, verbatim>
;;
;; Proxy-wasm ABI v0.2.1; imports only two host functions, needs no WASI.
;; Rebuild config/add-header.wasm with:  .venv/bin/python tools/build_example_module.py
;;
;; Envoy may run several plugin configurations in one VM (same module and vm_config),
;; each with its own root context. So the configuration is stored per root context and
;; each stream looks up the root context it was created under.
;;
;; Memory map:
;;   0x0008  u32   return slot: data pointer from proxy_get_buffer_bytes
;;   0x000c  u32   return slot: data size from proxy_get_buffer_bytes
;;   0x0100  text  header names and value
;;   0x0400  64 x {root_context_id, config_ptr, config_len}   (12 bytes each)
;;   0x0800  1024 x {stream_context_id, root_context_id}      (8 bytes each, by id % 1024)
;;   0x4000  heap (bump allocator, never frees; only used for configuration copies)
(module
  ;; proxy_add_header_map_value(map_type, key_ptr, key_len, value_ptr, value_len) -> status
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  ;; proxy_get_buffer_bytes(buffer_type, start, max_size, ret_ptr_ptr, ret_size_ptr) -> status
  (import "env" "proxy_get_buffer_bytes"
    (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 0x100) "x-wasm-filter")  ;; 13 bytes
  (data (i32.const 0x110) "add-header")     ;; 10 bytes
  (data (i32.const 0x120) "x-wasm-config")  ;; 13 bytes

  ;; Marks the module as proxy-wasm ABI v0.2.1; never called.
  (func (export "proxy_abi_version_0_2_1"))

  ;; The host calls this to place buffers (here: the plugin configuration) in our memory.
  (global $heap (mut i32) (i32.const 0x4000))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $ptr i32) (local $end i32) (local $have i32)
    (local.set $ptr (global.get $heap))
    (local.set $end (i32.and (i32.add (i32.add (local.get $ptr) (local.get $size)) (i32.const 7))
                             (i32.const -8)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq (i32.const -1) (memory.grow
              (i32.shr_u (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535))
                         (i32.const 16))))
          (then (return (i32.const 0))))))  ;; 0 = allocation failed
    (global.set $heap (local.get $end))
    (local.get $ptr))

  ;; --- per-root-context configuration table --------------------------------------------
  (global $roots_written (mut i32) (i32.const 0))

  ;; Address of the table entry of $root_id, or 0 if it has none.
  (func $find_root (param $root_id i32) (result i32)
    (local $i i32) (local $n i32) (local $entry i32)
    (local.set $n (global.get $roots_written))
    (if (i32.gt_u (local.get $n) (i32.const 64)) (then (local.set $n (i32.const 64))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $entry (i32.add (i32.const 0x400) (i32.mul (local.get $i) (i32.const 12))))
        (if (i32.eq (i32.load (local.get $entry)) (local.get $root_id))
          (then (return (local.get $entry))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  ;; --- callbacks ----------------------------------------------------------------------
  (func (export "proxy_on_vm_start") (param $root_id i32) (param $vm_config_size i32) (result i32)
    (i32.const 1))  ;; true: VM started

  ;; Store this root context's configuration (buffer type 7 = PLUGIN_CONFIGURATION).
  (func (export "proxy_on_configure") (param $root_id i32) (param $config_size i32) (result i32)
    (local $entry i32)
    (local.set $entry (call $find_root (local.get $root_id)))
    (if (i32.eqz (local.get $entry))
      (then  ;; new root context: take the next slot (the oldest is reused after 64)
        (local.set $entry (i32.add (i32.const 0x400)
          (i32.mul (i32.rem_u (global.get $roots_written) (i32.const 64)) (i32.const 12))))
        (global.set $roots_written (i32.add (global.get $roots_written) (i32.const 1)))))
    (i32.store (local.get $entry) (local.get $root_id))
    (i32.store offset=8 (local.get $entry) (i32.const 0))  ;; no configuration yet
    (if (i32.gt_u (local.get $config_size) (i32.const 0))
      (then
        (if (i32.eqz (call $get_buffer (i32.const 7) (i32.const 0) (local.get $config_size)
                                       (i32.const 0x08) (i32.const 0x0c)))
          (then
            (i32.store offset=4 (local.get $entry) (i32.load (i32.const 0x08)))
            (i32.store offset=8 (local.get $entry) (i32.load (i32.const 0x0c)))))))
    (i32.const 1))  ;; true: configuration accepted

  ;; A stream context (parent != 0) remembers its root context.
  (func (export "proxy_on_context_create") (param $context_id i32) (param $parent_id i32)
    (local $slot i32)
    (if (local.get $parent_id)
      (then
        (local.set $slot (i32.add (i32.const 0x800)
          (i32.shl (i32.and (local.get $context_id) (i32.const 1023)) (i32.const 3))))
        (i32.store (local.get $slot) (local.get $context_id))
        (i32.store offset=4 (local.get $slot) (local.get $parent_id)))))

  (func (export "proxy_on_response_headers")
    (param $context_id i32) (param $num_headers i32) (param $end_of_stream i32) (result i32)
    (local $slot i32) (local $entry i32)
    ;; map type 2 = HTTP_RESPONSE_HEADERS
    (drop (call $add_header (i32.const 2)
      (i32.const 0x100) (i32.const 13) (i32.const 0x110) (i32.const 10)))
    (local.set $slot (i32.add (i32.const 0x800)
      (i32.shl (i32.and (local.get $context_id) (i32.const 1023)) (i32.const 3))))
    (if (i32.eq (i32.load (local.get $slot)) (local.get $context_id))
      (then
        (local.set $entry (call $find_root (i32.load offset=4 (local.get $slot))))
        (if (i32.and (i32.ne (local.get $entry) (i32.const 0))
                     (i32.ne (i32.load offset=8 (local.get $entry)) (i32.const 0)))
          (then
            (drop (call $add_header (i32.const 2) (i32.const 0x120) (i32.const 13)
              (i32.load offset=4 (local.get $entry)) (i32.load offset=8 (local.get $entry))))))))
    (i32.const 0))  ;; 0 = Continue
)
