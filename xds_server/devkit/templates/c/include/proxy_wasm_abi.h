/*
 * proxy_wasm_abi.h: the proxy-wasm ABI v0.2.1 as C declarations, written from the
 * specification (https://github.com/proxy-wasm/spec, abi-versions/v0.2.1). No SDK.
 *
 * Host functions are imported from the module "env"; a call returns a proxy_status_t.
 * Data the host returns (header values, buffers) is written into memory the host asks
 * the module for through the exported proxy_on_memory_allocate: the caller frees it.
 */
#ifndef PROXY_WASM_ABI_H
#define PROXY_WASM_ABI_H

typedef unsigned char uint8_t;
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;
typedef long long int64_t;
typedef __SIZE_TYPE__ size_t;

/* Export a function from the module under its ABI name. */
#define PROXY_EXPORT(name) __attribute__((export_name(#name)))
/* Import a host function from the module "env". */
#define PROXY_IMPORT(name) __attribute__((import_module("env"), import_name(#name)))

typedef enum {
  PROXY_LOG_TRACE = 0, PROXY_LOG_DEBUG = 1, PROXY_LOG_INFO = 2,
  PROXY_LOG_WARN = 3, PROXY_LOG_ERROR = 4, PROXY_LOG_CRITICAL = 5,
} proxy_log_level_t;

typedef enum {
  PROXY_OK = 0, PROXY_NOT_FOUND = 1, PROXY_BAD_ARGUMENT = 2, PROXY_SERIALIZATION_FAILURE = 3,
  PROXY_PARSE_FAILURE = 4, PROXY_INVALID_MEMORY_ACCESS = 6, PROXY_EMPTY = 7,
  PROXY_CAS_MISMATCH = 8, PROXY_INTERNAL_FAILURE = 10, PROXY_UNIMPLEMENTED = 12,
} proxy_status_t;

typedef enum { PROXY_CONTINUE = 0, PROXY_PAUSE = 1 } proxy_action_t;

typedef enum {
  PROXY_BUFFER_HTTP_REQUEST_BODY = 0, PROXY_BUFFER_HTTP_RESPONSE_BODY = 1,
  PROXY_BUFFER_DOWNSTREAM_DATA = 2, PROXY_BUFFER_UPSTREAM_DATA = 3,
  PROXY_BUFFER_HTTP_CALL_RESPONSE_BODY = 4, PROXY_BUFFER_GRPC_CALL_MESSAGE = 5,
  PROXY_BUFFER_VM_CONFIGURATION = 6, PROXY_BUFFER_PLUGIN_CONFIGURATION = 7,
  PROXY_BUFFER_FOREIGN_FUNCTION_ARGUMENTS = 8,
} proxy_buffer_type_t;

typedef enum {
  PROXY_MAP_HTTP_REQUEST_HEADERS = 0, PROXY_MAP_HTTP_REQUEST_TRAILERS = 1,
  PROXY_MAP_HTTP_RESPONSE_HEADERS = 2, PROXY_MAP_HTTP_RESPONSE_TRAILERS = 3,
  PROXY_MAP_GRPC_CALL_INITIAL_METADATA = 4, PROXY_MAP_GRPC_CALL_TRAILING_METADATA = 5,
  PROXY_MAP_HTTP_CALL_RESPONSE_HEADERS = 6, PROXY_MAP_HTTP_CALL_RESPONSE_TRAILERS = 7,
} proxy_map_type_t;

typedef enum {
  PROXY_STREAM_HTTP_REQUEST = 0, PROXY_STREAM_HTTP_RESPONSE = 1,
  PROXY_STREAM_DOWNSTREAM = 2, PROXY_STREAM_UPSTREAM = 3,
} proxy_stream_type_t;

typedef enum { PROXY_METRIC_COUNTER = 0, PROXY_METRIC_GAUGE = 1, PROXY_METRIC_HISTOGRAM = 2 } proxy_metric_type_t;

/* -- logging, time -------------------------------------------------------------------- */
PROXY_IMPORT(proxy_log)
proxy_status_t proxy_log(proxy_log_level_t level, const char *message_data, size_t message_size);
PROXY_IMPORT(proxy_get_log_level)
proxy_status_t proxy_get_log_level(proxy_log_level_t *return_log_level);
PROXY_IMPORT(proxy_get_current_time_nanoseconds)
proxy_status_t proxy_get_current_time_nanoseconds(uint64_t *return_time);
PROXY_IMPORT(proxy_set_tick_period_milliseconds)
proxy_status_t proxy_set_tick_period_milliseconds(uint32_t tick_period);

/* -- contexts ------------------------------------------------------------------------- */
PROXY_IMPORT(proxy_set_effective_context)
proxy_status_t proxy_set_effective_context(uint32_t context_id);
PROXY_IMPORT(proxy_done)
proxy_status_t proxy_done(void);

/* -- buffers (plugin configuration, bodies) ------------------------------------------- */
PROXY_IMPORT(proxy_get_buffer_status)
proxy_status_t proxy_get_buffer_status(proxy_buffer_type_t buffer_id, size_t *return_buffer_size,
                                       uint32_t *return_unused);
PROXY_IMPORT(proxy_get_buffer_bytes)
proxy_status_t proxy_get_buffer_bytes(proxy_buffer_type_t buffer_id, size_t start, size_t max_size,
                                      uint8_t **return_value_data, size_t *return_value_size);
PROXY_IMPORT(proxy_set_buffer_bytes)
proxy_status_t proxy_set_buffer_bytes(proxy_buffer_type_t buffer_id, size_t start, size_t size,
                                      const uint8_t *value_data, size_t value_size);

/* -- header maps ---------------------------------------------------------------------- */
PROXY_IMPORT(proxy_get_header_map_value)
proxy_status_t proxy_get_header_map_value(proxy_map_type_t map_id, const char *key_data, size_t key_size,
                                          uint8_t **return_value_data, size_t *return_value_size);
PROXY_IMPORT(proxy_add_header_map_value)
proxy_status_t proxy_add_header_map_value(proxy_map_type_t map_id, const char *key_data, size_t key_size,
                                          const uint8_t *value_data, size_t value_size);
PROXY_IMPORT(proxy_replace_header_map_value)
proxy_status_t proxy_replace_header_map_value(proxy_map_type_t map_id, const char *key_data, size_t key_size,
                                              const uint8_t *value_data, size_t value_size);
PROXY_IMPORT(proxy_remove_header_map_value)
proxy_status_t proxy_remove_header_map_value(proxy_map_type_t map_id, const char *key_data, size_t key_size);
PROXY_IMPORT(proxy_get_header_map_size)
proxy_status_t proxy_get_header_map_size(proxy_map_type_t map_id, size_t *return_serialized_pairs_size);
PROXY_IMPORT(proxy_get_header_map_pairs)
proxy_status_t proxy_get_header_map_pairs(proxy_map_type_t map_id, uint8_t **return_serialized_pairs_data,
                                          size_t *return_serialized_pairs_size);
PROXY_IMPORT(proxy_set_header_map_pairs)
proxy_status_t proxy_set_header_map_pairs(proxy_map_type_t map_id, const uint8_t *serialized_pairs_data,
                                          size_t serialized_pairs_size);

/* -- stream control ------------------------------------------------------------------- */
PROXY_IMPORT(proxy_continue_stream)
proxy_status_t proxy_continue_stream(proxy_stream_type_t stream_type);
PROXY_IMPORT(proxy_close_stream)
proxy_status_t proxy_close_stream(proxy_stream_type_t stream_type);
PROXY_IMPORT(proxy_send_local_response)
proxy_status_t proxy_send_local_response(uint32_t status_code, const char *status_code_details_data,
                                         size_t status_code_details_size, const uint8_t *body_data,
                                         size_t body_size, const uint8_t *serialized_headers_data,
                                         size_t serialized_headers_size, uint32_t grpc_status);

/* -- metrics -------------------------------------------------------------------------- */
PROXY_IMPORT(proxy_define_metric)
proxy_status_t proxy_define_metric(proxy_metric_type_t metric_type, const char *name_data, size_t name_size,
                                   uint32_t *return_metric_id);
PROXY_IMPORT(proxy_increment_metric)
proxy_status_t proxy_increment_metric(uint32_t metric_id, int64_t delta);
PROXY_IMPORT(proxy_record_metric)
proxy_status_t proxy_record_metric(uint32_t metric_id, uint64_t value);
PROXY_IMPORT(proxy_get_metric)
proxy_status_t proxy_get_metric(uint32_t metric_id, uint64_t *return_value);

/* -- properties, shared data ---------------------------------------------------------- */
PROXY_IMPORT(proxy_get_property)
proxy_status_t proxy_get_property(const uint8_t *path_data, size_t path_size, uint8_t **return_value_data,
                                  size_t *return_value_size);
PROXY_IMPORT(proxy_set_property)
proxy_status_t proxy_set_property(const uint8_t *path_data, size_t path_size, const uint8_t *value_data,
                                  size_t value_size);
PROXY_IMPORT(proxy_get_shared_data)
proxy_status_t proxy_get_shared_data(const char *key_data, size_t key_size, uint8_t **return_value_data,
                                     size_t *return_value_size, uint32_t *return_cas);
PROXY_IMPORT(proxy_set_shared_data)
proxy_status_t proxy_set_shared_data(const char *key_data, size_t key_size, const uint8_t *value_data,
                                     size_t value_size, uint32_t cas);

/* -- memory the host writes into (alloc.c) -------------------------------------------- */
void *proxy_wasm_malloc(size_t size);
void proxy_wasm_free(void *ptr);
void proxy_wasm_copy(void *dst, const void *src, size_t n);

#endif /* PROXY_WASM_ABI_H */
