#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct etcdreg_arena_chunk {
  etcdreg_arena_chunk_t *next;
  max_align_t align_[];
};

#define ARENA_CHUNK 4096

void etcdreg_arena_init(etcdreg_arena_t *a) {
  a->chunks = NULL;
  a->cur = NULL;
  a->left = 0;
  a->failed = 0;
}

void *etcdreg_arena_alloc(etcdreg_arena_t *a, size_t n) {
  size_t align = _Alignof(max_align_t);
  size_t need = (n + align - 1) & ~(align - 1);
  if (need == 0) need = align;
  if (need > a->left) {
    size_t size = need > ARENA_CHUNK ? need : ARENA_CHUNK;
    etcdreg_arena_chunk_t *c = malloc(sizeof(*c) + size);
    if (!c) {
      a->failed = 1;
      return NULL;
    }
    c->next = a->chunks;
    a->chunks = c;
    a->cur = (char *)c->align_;
    a->left = size;
  }
  void *p = a->cur;
  a->cur += need;
  a->left -= need;
  memset(p, 0, n);
  return p;
}

void *etcdreg_arena_dup(etcdreg_arena_t *a, const void *p, size_t n) {
  void *d = etcdreg_arena_alloc(a, n ? n : 1);
  if (d && n) memcpy(d, p, n);
  return d;
}

void etcdreg_arena_free(etcdreg_arena_t *a) {
  etcdreg_arena_chunk_t *c = a->chunks;
  while (c) {
    etcdreg_arena_chunk_t *next = c->next;
    free(c);
    c = next;
  }
  etcdreg_arena_init(a);
}
