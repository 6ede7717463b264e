/* etcdreg/watch.h - watches: every change to a key, a prefix or a range, in order, with
 * no event lost or repeated across reconnections.
 *
 * All watches of a client share one gRPC Watch stream. Each watcher remembers the last
 * revision it delivered; when the stream or the connection fails, every watcher is
 * created again on the new stream from that revision + 1. Same rules as
 * etcdreg/client.h: loop thread only, inputs copied, callback data borrowed. */
#ifndef ETCDREG_WATCH_H
#define ETCDREG_WATCH_H

#include "etcdreg/client.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct etcdreg_watch etcdreg_watch_t;

typedef enum { ETCDREG_EVENT_PUT = 0, ETCDREG_EVENT_DELETE = 1 } etcdreg_event_type_t;

typedef struct etcdreg_watch_event {
  etcdreg_event_type_t type;
  etcdreg_kv_t kv;              /* for a delete: the key and the delete's mod_revision */
  const etcdreg_kv_t *prev_kv;  /* with prev_kv set and a previous value; else NULL */
} etcdreg_watch_event_t;

typedef struct etcdreg_watch_opts {
  int prefix;               /* every key starting with the key */
  const void *range_end;    /* or [key, range_end) */
  size_t range_end_len;
  int64_t start_revision;   /* first revision to deliver; 0 = from now */
  int prev_kv;              /* deliver the previous key-value with each event */
  int no_put;               /* filter out puts */
  int no_delete;            /* filter out deletes */
  int progress_notify;      /* ask the server for periodic progress notifications */
  int fragment;             /* let the server split huge revisions (reassembled here) */
} etcdreg_watch_opts_t;

typedef struct etcdreg_watch_cbs {
  /* Once, when the server confirmed the watch: every event written after the returned
   * revision will be delivered. May be NULL. */
  void (*ready)(etcdreg_watch_t *w, int64_t revision, void *data);
  /* A batch of events, all of one or more whole revisions, in order; `revision` is the
   * response header's revision. Borrowed for the call. */
  void (*events)(etcdreg_watch_t *w, int64_t revision, const etcdreg_watch_event_t *events,
                 size_t count, void *data);
  /* Exactly once; the handle is freed when it returns. status: ETCDREG_ECANCELED
   * (etcdreg_watch_cancel, or cancelled by the server: `reason` says why),
   * ETCDREG_ECOMPACTED (the revision to resume from was compacted: `compact_revision`
   * is the oldest revision still available; re-read and watch again from there),
   * ETCDREG_EPERM, ETCDREG_ECLOSED (client closed). */
  void (*ended)(etcdreg_watch_t *w, int status, int64_t compact_revision, const char *reason,
                void *data);
  /* The watch's stream was lost: ETCDREG_ENOLEADER when the member lost its leader,
   * else ETCDREG_EUNAVAILABLE. Nothing to do: the watch resumes by itself from its next
   * revision, without loss (`ready` does not fire again). May be NULL. */
  void (*interrupted)(etcdreg_watch_t *w, int status, const char *detail, void *data);
} etcdreg_watch_cbs_t;

/* Starts watching `key` (with opts->prefix or opts->range_end, a prefix or range). An
 * empty key with prefix watches everything. Returns 0 and *out, or ETCDREG_EINVAL,
 * ETCDREG_ECLOSED, ETCDREG_ENOMEM (then no callback fires). */
ETCDREG_EXTERN int etcdreg_watch_start(etcdreg_client_t *c, const void *key, size_t key_len,
                                       const etcdreg_watch_opts_t *opts,
                                       const etcdreg_watch_cbs_t *cbs, void *data,
                                       etcdreg_watch_t **out);
/* Cancels the watch; `ended` fires later with ETCDREG_ECANCELED and no event after it.
 * No-op once ended has been scheduled. */
ETCDREG_EXTERN void etcdreg_watch_cancel(etcdreg_watch_t *w);
/* The next revision this watch will deliver (its resume point). */
ETCDREG_EXTERN int64_t etcdreg_watch_next_revision(const etcdreg_watch_t *w);

#ifdef __cplusplus
}
#endif
#endif
