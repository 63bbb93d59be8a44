/*
 * Memory for the host: proxy_on_memory_allocate hands out space from an arena after the
 * module's data and stack. The arena is a bump allocator that counts live allocations and
 * starts again from the bottom whenever none is live. Callbacks run one at a time and the
 * filter frees what the host gave it before returning, so the arena empties after every
 * callback. Memory grows a page at a time when needed.
 */
#include "proxy_wasm_abi.h"

extern unsigned char __heap_base;

static size_t arena_top;
static size_t arena_live;

void *proxy_wasm_malloc(size_t size) {
  size_t base = (size_t)&__heap_base;
  if (arena_live == 0 || arena_top < base) arena_top = base;
  size_t start = (arena_top + 7) & ~(size_t)7;
  size_t end = start + size;
  size_t have = __builtin_wasm_memory_size(0) * 65536;
  if (end > have) {
    size_t pages = (end - have + 65535) / 65536;
    if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) return 0;
  }
  arena_top = end;
  arena_live++;
  return (void *)start;
}

void proxy_wasm_free(void *ptr) {
  if (ptr != 0 && arena_live > 0) arena_live--;
}

void proxy_wasm_copy(void *dst, const void *src, size_t n) {
  unsigned char *d = dst;
  const unsigned char *s = src;
  while (n--) *d++ = *s++;
}

PROXY_EXPORT(proxy_on_memory_allocate)
void *proxy_on_memory_allocate(size_t size) { return proxy_wasm_malloc(size); }
