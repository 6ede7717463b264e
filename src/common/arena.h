/* arena: a bump allocator for short-lived trees (a request being encoded, a response
 * being converted for a callback). Everything is freed at once. */
#ifndef ETCDREG_ARENA_H
#define ETCDREG_ARENA_H

#include <stddef.h>

typedef struct etcdreg_arena_chunk etcdreg_arena_chunk_t;

typedef struct {
  etcdreg_arena_chunk_t *chunks;
  char *cur;
  size_t left;
  int failed; /* set once any allocation failed: callers check once at the end */
} etcdreg_arena_t;

void etcdreg_arena_init(etcdreg_arena_t *a);
void *etcdreg_arena_alloc(etcdreg_arena_t *a, size_t n);  /* zeroed; NULL on ENOMEM */
void *etcdreg_arena_dup(etcdreg_arena_t *a, const void *p, size_t n);
void etcdreg_arena_free(etcdreg_arena_t *a);

#define ETCDREG_ARENA_NEW(a, type, count) ((type *)etcdreg_arena_alloc((a), sizeof(type) * (count)))

#endif
