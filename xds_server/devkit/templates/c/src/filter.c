/*
 * __NAME__: an HTTP filter for Envoy on the proxy-wasm ABI v0.2.1.
 *
 * On each response it adds
 *   __HEADER__: <plugin configuration, or "hello" when it is empty>
 *   __HEADER__-version: VERSION
 *   __HEADER__-user-agent: <the request's user-agent header>
 * and it counts requests in the counter "__METRIC__" (Envoy's /stats shows it as
 * wasmcustom.__METRIC__).
 *
 * Envoy lets a filter read the request headers only while they pass (in
 * proxy_on_request_headers), so the user-agent is kept per request, in a slot of a small
 * table indexed by context id, until proxy_on_delete.
 */
#include "proxy_wasm_abi.h"

/* Edit these and save: `xds-server dev` rebuilds and swaps the filter in Envoy. */
#define HEADER "__HEADER__"
#define VERSION "1"
#define METRIC "__METRIC__"

#define LEN(literal) (sizeof(literal) - 1)

static char configuration[4096];
static size_t configuration_size;
static uint32_t requests_metric;
static int metric_defined;

#define SLOTS 64
static struct {
  uint32_t context_id;
  size_t size;
  char value[256];
} user_agents[SLOTS];

static void log_message(proxy_log_level_t level, const char *text) {
  size_t n = 0;
  while (text[n]) n++;
  proxy_log(level, text, n);
}

static void add_response_header(const char *name, size_t name_size, const void *value, size_t value_size) {
  proxy_add_header_map_value(PROXY_MAP_HTTP_RESPONSE_HEADERS, name, name_size, value, value_size);
}

PROXY_EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}

PROXY_EXPORT(proxy_on_vm_start) int proxy_on_vm_start(uint32_t root_context_id, size_t vm_configuration_size) {
  return 1;
}

/* Keeps the plugin configuration; refuses one larger than 4 KiB (Envoy then NACKs it). */
PROXY_EXPORT(proxy_on_configure) int proxy_on_configure(uint32_t root_context_id, size_t size) {
  if (size > sizeof(configuration)) {
    log_message(PROXY_LOG_ERROR, "__NAME__: plugin configuration larger than 4096 bytes");
    return 0;
  }
  configuration_size = 0;
  if (size > 0) {
    uint8_t *data = 0;
    size_t n = 0;
    if (proxy_get_buffer_bytes(PROXY_BUFFER_PLUGIN_CONFIGURATION, 0, size, &data, &n) != PROXY_OK) {
      log_message(PROXY_LOG_ERROR, "__NAME__: cannot read the plugin configuration");
      return 0;
    }
    proxy_wasm_copy(configuration, data, n);
    configuration_size = n;
    proxy_wasm_free(data);
  }
  if (!metric_defined) {
    metric_defined = proxy_define_metric(PROXY_METRIC_COUNTER, METRIC, LEN(METRIC), &requests_metric) == PROXY_OK;
  }
  return 1;
}

PROXY_EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t context_id, uint32_t parent_id) {}

PROXY_EXPORT(proxy_on_request_headers)
proxy_action_t proxy_on_request_headers(uint32_t context_id, size_t num_headers, int end_of_stream) {
  if (metric_defined) proxy_increment_metric(requests_metric, 1);
  uint8_t *agent = 0;
  size_t agent_size = 0;
  if (proxy_get_header_map_value(PROXY_MAP_HTTP_REQUEST_HEADERS, "user-agent", LEN("user-agent"), &agent,
                                 &agent_size) == PROXY_OK) {
    size_t n = agent_size < sizeof(user_agents[0].value) ? agent_size : sizeof(user_agents[0].value);
    user_agents[context_id % SLOTS].context_id = context_id;
    user_agents[context_id % SLOTS].size = n;
    proxy_wasm_copy(user_agents[context_id % SLOTS].value, agent, n);
  }
  proxy_wasm_free(agent);
  return PROXY_CONTINUE;
}

PROXY_EXPORT(proxy_on_response_headers)
proxy_action_t proxy_on_response_headers(uint32_t context_id, size_t num_headers, int end_of_stream) {
  if (configuration_size > 0) {
    add_response_header(HEADER, LEN(HEADER), configuration, configuration_size);
  } else {
    add_response_header(HEADER, LEN(HEADER), "hello", LEN("hello"));
  }
  add_response_header(HEADER "-version", LEN(HEADER "-version"), VERSION, LEN(VERSION));
  if (user_agents[context_id % SLOTS].context_id == context_id && user_agents[context_id % SLOTS].size > 0) {
    add_response_header(HEADER "-user-agent", LEN(HEADER "-user-agent"), user_agents[context_id % SLOTS].value,
                        user_agents[context_id % SLOTS].size);
  }
  return PROXY_CONTINUE;
}

PROXY_EXPORT(proxy_on_done) int proxy_on_done(uint32_t context_id) { return 1; }
PROXY_EXPORT(proxy_on_log) void proxy_on_log(uint32_t context_id) {}
PROXY_EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t context_id) {
  if (user_agents[context_id % SLOTS].context_id == context_id) user_agents[context_id % SLOTS].context_id = 0;
}
