/* Internals of the registry layer (registry.c, registration.c, rwatch.c). The registry
 * uses only the public client, watch and lease API of the layer below. */
#ifndef ETCDREG_REGISTRY_INTERNAL_H
#define ETCDREG_REGISTRY_INTERNAL_H

#include <stdint.h>

#include "../common/arena.h"
#include "../common/timerq.h"
#include "codec.h"
#include "etcdreg/lease.h"
#include "etcdreg/registry.h"
#include "etcdreg/watch.h"

typedef struct etcdreg_lease_slot etcdreg_lease_slot_t;
typedef struct etcdreg_own_watch etcdreg_own_watch_t;

struct etcdreg_registry {
  etcdreg_client_t *client;
  int owns_client;
  char *base;                      /* cleaned, no trailing '/' */
  uint64_t timeout_ms;             /* 0: the client's default */
  etcdreg_timerq_t timers;         /* backoff and deferred callbacks */
  size_t pending_ops;              /* group/node operations in flight */
  etcdreg_registration_t *regs;
  size_t reg_count;
  etcdreg_lease_slot_t *leases;
  etcdreg_own_watch_t *own_watches;
  etcdreg_registry_watch_t *watches;
  int opened;                      /* the open callback has fired */
  int closing, timers_closing, finished;
  etcdreg_registry_close_cb close_cb;
  void *close_data;
  etcdreg_timer_entry_t close_check;
  uint32_t rng;
};

/* registry.c */
void etcdreg__reg_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void etcdreg__reg_maybe_finish_close(etcdreg_registry_t *reg);
uint32_t etcdreg__reg_rand(etcdreg_registry_t *reg);
/* Registration bookkeeping the registry's close needs. */
void etcdreg__registrations_close(etcdreg_registry_t *reg);
int etcdreg__registrations_idle(const etcdreg_registry_t *reg);
/* Runs the empty-group cleanup transaction; `cb` may be NULL. Counts as a pending op. */
void etcdreg__group_cleanup(etcdreg_registry_t *reg, const char *group, void (*cb)(void *data, int status),
                            void *data);

/* rwatch.c */
void etcdreg__rwatches_close(etcdreg_registry_t *reg);
int etcdreg__rwatches_idle(const etcdreg_registry_t *reg);

#endif
