/* timerq: many deadlines, one uv_timer_t.
 *
 * A binary min-heap of entries ordered by due time (loop milliseconds, uv_now()). Each
 * entry is embedded in its owner (a call, a retry) and knows its heap index, so adding,
 * removing and re-arming are O(log n) and need no allocation per deadline. The single
 * timer is armed for the earliest entry only. */
#ifndef ETCDREG_TIMERQ_H
#define ETCDREG_TIMERQ_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct etcdreg_timer_entry etcdreg_timer_entry_t;
typedef void (*etcdreg_timer_fn)(etcdreg_timer_entry_t *entry);

#define ETCDREG_TIMER_IDLE ((size_t)-1)

struct etcdreg_timer_entry {
  uint64_t due_ms;
  uint64_t seq;          /* ties broken by insertion order: deterministic firing */
  size_t heap_index;     /* ETCDREG_TIMER_IDLE when not queued */
  etcdreg_timer_fn fn;
};

/* The pure heap, usable without a loop (unit-tested on its own). */
typedef struct {
  etcdreg_timer_entry_t **items;
  size_t len, cap;
  uint64_t next_seq;
} etcdreg_heap_t;

void etcdreg_heap_init(etcdreg_heap_t *h);
void etcdreg_heap_free(etcdreg_heap_t *h);
int etcdreg_heap_push(etcdreg_heap_t *h, etcdreg_timer_entry_t *e);   /* 0 or ETCDREG_ENOMEM */
void etcdreg_heap_remove(etcdreg_heap_t *h, etcdreg_timer_entry_t *e); /* no-op when idle */
etcdreg_timer_entry_t *etcdreg_heap_peek(const etcdreg_heap_t *h);
etcdreg_timer_entry_t *etcdreg_heap_pop(etcdreg_heap_t *h);

static inline void etcdreg_timer_entry_init(etcdreg_timer_entry_t *e, etcdreg_timer_fn fn) {
  e->due_ms = 0;
  e->seq = 0;
  e->heap_index = ETCDREG_TIMER_IDLE;
  e->fn = fn;
}
static inline int etcdreg_timer_entry_active(const etcdreg_timer_entry_t *e) {
  return e->heap_index != ETCDREG_TIMER_IDLE;
}

typedef struct etcdreg_timerq {
  uv_timer_t timer;
  etcdreg_heap_t heap;
  uint64_t armed_for; /* due time the uv timer is set for, 0 when stopped */
  void (*on_closed)(struct etcdreg_timerq *q);
} etcdreg_timerq_t;

int etcdreg_timerq_init(uv_loop_t *loop, etcdreg_timerq_t *q);
/* Queue (or re-queue) `e` to fire at `due_ms` (loop time, ms). 0 or ETCDREG_ENOMEM. */
int etcdreg_timerq_add(etcdreg_timerq_t *q, etcdreg_timer_entry_t *e, uint64_t due_ms);
void etcdreg_timerq_remove(etcdreg_timerq_t *q, etcdreg_timer_entry_t *e);
/* Closes the timer handle; `on_closed` runs from the loop once it is closed. Entries
 * still queued are dropped without firing. */
void etcdreg_timerq_close(etcdreg_timerq_t *q, void (*on_closed)(etcdreg_timerq_t *q));

#endif
