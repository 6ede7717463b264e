/* etcdreg/registry.h - service registry on etcd: groups with shared configuration,
 * nodes registered with a TTL and renewed automatically, discovery and watches.
 *
 * Data layout and JSON are those of the Go library go.lumeweb.com/etcd-registry, so Go and
 * C services can share one registry:
 *   <base>/<group>                        group config (JSON, no lease)
 *   <base>/<group>/nodes/<ID>_<Exporter>  node (JSON, on the registration's lease)
 * Unlike the Go library, every range and watch over a group uses "<base>/<group>/" (plus
 * the exact group key), so group "grp" never sees or touches "grp2".
 *
 * Same rules as etcdreg/client.h: every call on the loop thread; everything passed in is
 * copied; everything handed to a callback is borrowed for that callback; a call that
 * returns 0 fires its callback exactly once, later, from the loop; a call that returns a
 * negative code fires nothing. Validation failures return ETCDREG_EINVAL and
 * etcdreg_registry_last_error() gives the message (the Go library's wording).
 *
 * Group credentials (spec.username / spec.password) are stored in the group JSON exactly
 * as the Go library stores them, in plain text: they are metadata for applications, not
 * protection. Nothing checks them. To protect a group, use etcd's own users and roles,
 * e.g. `etcdctl role add svc-a && etcdctl role grant-permission svc-a readwrite
 * /services/svc-a --prefix=true && etcdctl user grant-role app svc-a`, and give the
 * client that user's credentials. The library never logs or prints them. */
#ifndef ETCDREG_REGISTRY_H
#define ETCDREG_REGISTRY_H

#include "etcdreg/client.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct etcdreg_registry etcdreg_registry_t;
typedef struct etcdreg_registration etcdreg_registration_t;
typedef struct etcdreg_registry_watch etcdreg_registry_watch_t;

typedef struct etcdreg_label {
  const char *key;
  const char *value;
} etcdreg_label_t;

/* A node (a scrape target). In callbacks the labels are sorted by key. */
typedef struct etcdreg_node {
  const char *id;             /* no '/', not "." or ".." */
  const char *exporter_type;  /* same rule */
  int port;                   /* 1..65535 */
  const char *metrics_path;   /* non-empty */
  const etcdreg_label_t *labels;
  size_t label_count;
  const char *status;         /* as stored; register always stores "healthy" */
  int64_t last_seen_ns;       /* unix time in ns; 0 when unknown */
} etcdreg_node_t;

typedef struct etcdreg_group_spec {
  const char *username;       /* metadata only, see above */
  const char *password;       /* metadata only, see above */
  const etcdreg_label_t *common_labels;
  size_t common_label_count;
} etcdreg_group_spec_t;

typedef struct etcdreg_group {
  const char *name;
  etcdreg_group_spec_t spec;
  int64_t created_ns;         /* unix time in ns */
  int64_t mod_revision;       /* of the group key; for compare-and-swap */
} etcdreg_group_t;

/* The message of the last ETCDREG_EINVAL returned by a registry call on this thread
 * (e.g. "port must be > 0"); "" when none. Static/thread-local: copy it to keep it. */
ETCDREG_EXTERN const char *etcdreg_registry_last_error(void);

/* ---- open and close ---- */

typedef void (*etcdreg_registry_open_cb)(etcdreg_registry_t *reg, int status, const char *message,
                                         void *data);
typedef void (*etcdreg_registry_close_cb)(etcdreg_registry_t *reg, void *data);

/* Opens a registry under `base` on an existing client (which must outlive it). `base` is
 * cleaned like Go's path.Join ("//a//b/" -> "/a/b"); "" and "/" are rejected. `cb` fires
 * after a connection check that reads nothing outside base (a keys-only Range of
 * "<base>/" with limit 1), with 0 or the error; on error the registry must still be
 * closed. *out is set at once. */
ETCDREG_EXTERN int etcdreg_registry_open(etcdreg_client_t *client, const char *base,
                                         etcdreg_registry_open_cb cb, void *data,
                                         etcdreg_registry_t **out);

/* The Go constructor's shape: endpoints, base, username, password, default timeout (every
 * operation's deadline, default 10 s) and max retries of unavailable calls (0: the
 * client's default, 10; negative: none). The registry owns its client and closes it on
 * etcdreg_registry_close. */
typedef struct etcdreg_registry_options {
  const char *const *endpoints;
  const char *base;
  const char *username;
  const char *password;
  uint64_t default_timeout_ms;
  int max_retries;
} etcdreg_registry_options_t;

ETCDREG_EXTERN int etcdreg_registry_connect(uv_loop_t *loop, const etcdreg_registry_options_t *opt,
                                            etcdreg_registry_open_cb cb, void *data,
                                            etcdreg_registry_t **out);

/* Stops every registration (deregistering its node and revoking leases no one else
 * uses) and cancels every watch the registry owns; each ended callback fires once, then
 * `cb`. Calls after close fail with ETCDREG_ECLOSED. A second close returns ECLOSED. */
ETCDREG_EXTERN int etcdreg_registry_close(etcdreg_registry_t *reg, etcdreg_registry_close_cb cb,
                                          void *data);

ETCDREG_EXTERN const char *etcdreg_registry_base(const etcdreg_registry_t *reg);
ETCDREG_EXTERN etcdreg_client_t *etcdreg_registry_client(const etcdreg_registry_t *reg);

/* ---- groups ---- */

/* `group` is NULL on failure; `message` explains (server message or decode error). */
typedef void (*etcdreg_group_cb)(etcdreg_registry_t *reg, int status, const etcdreg_group_t *group,
                                 const char *message, void *data);
typedef void (*etcdreg_status_cb)(etcdreg_registry_t *reg, int status, const char *message,
                                  void *data);
typedef void (*etcdreg_group_list_cb)(etcdreg_registry_t *reg, int status, const char *const *names,
                                      size_t count, void *data);

/* Creates the group (empty spec) if it does not exist, else loads it. Atomic. */
ETCDREG_EXTERN int etcdreg_group_create_or_join(etcdreg_registry_t *reg, const char *group,
                                                etcdreg_group_cb cb, void *data);
/* ETCDREG_ENOTFOUND when absent; ETCDREG_EDECODE when the stored value is not JSON. */
ETCDREG_EXTERN int etcdreg_group_get(etcdreg_registry_t *reg, const char *group, etcdreg_group_cb cb,
                                     void *data);
/* Replaces the whole spec (credentials and common labels) with compare-and-swap on the
 * group key's mod revision: the revision of `expected_mod_revision` if not 0 (the group
 * as the caller last saw it), else the revision just read. A concurrent change fails with
 * ETCDREG_ECONFLICT ("concurrent modification detected, please retry"). */
ETCDREG_EXTERN int etcdreg_group_configure(etcdreg_registry_t *reg, const char *group,
                                           const etcdreg_group_spec_t *spec,
                                           int64_t expected_mod_revision, etcdreg_group_cb cb,
                                           void *data);
/* Read, modify, compare-and-swap, retried up to `max_attempts` (default 10 when 0) on
 * conflict. `update` gets the current group and fills `spec` (its pointers must stay valid
 * until it returns; they are copied right after); it returns 0 to write, or a negative
 * code to abort (passed to `cb`). The new spec is validated like configure. */
typedef int (*etcdreg_group_update_fn)(const etcdreg_group_t *current, etcdreg_group_spec_t *spec,
                                       void *data);
ETCDREG_EXTERN int etcdreg_group_update(etcdreg_registry_t *reg, const char *group,
                                        etcdreg_group_update_fn update, int max_attempts,
                                        etcdreg_group_cb cb, void *data);
/* Every group with a config key, sorted. */
ETCDREG_EXTERN int etcdreg_group_list(etcdreg_registry_t *reg, etcdreg_group_list_cb cb, void *data);
/* Deletes the group key and every key under "<base>/<group>/" (nothing of a sibling). It
 * does not stop registrations of this registry (they put their node back). */
ETCDREG_EXTERN int etcdreg_group_delete(etcdreg_registry_t *reg, const char *group,
                                        etcdreg_status_cb cb, void *data);

/* ---- nodes ---- */

typedef struct etcdreg_registration_cbs {
  /* After the first registration and after every re-registration; `as_stored` is the node
   * as written (common labels merged), `granted_ttl_ms` the TTL etcd granted. */
  void (*registered)(etcdreg_registration_t *r, const etcdreg_node_t *as_stored,
                     uint64_t granted_ttl_ms, void *data);
  /* Each failed attempt: the error, the attempt number (1-based) and when the next one
   * runs. ETCDREG_EEXIST means another node owns the key (it is retried too). */
  void (*error)(etcdreg_registration_t *r, int err, const char *message, int attempt,
                uint64_t retry_in_ms, void *data);
  /* Exactly once: ETCDREG_ECANCELED after etcdreg_registration_stop (node deregistered),
   * ETCDREG_ECLOSED when the registry closed. The handle is freed when it returns. */
  void (*ended)(etcdreg_registration_t *r, int status, void *data);
} etcdreg_registration_cbs_t;

typedef struct etcdreg_register_opts {
  /* Delete the group when this registration stops and its node was the last (off by
   * default, as in the Go library only an explicit node delete cleans groups). */
  int cleanup_empty_group;
  uint64_t backoff_min_ms;   /* re-registration backoff, default 1 000 */
  uint64_t backoff_max_ms;   /* default 30 000 */
} etcdreg_register_opts_t;

/* Registers `node` in `group` with a TTL in ms (rounded up to whole seconds; etcd may
 * raise it to its minimum, and the granted TTL is used and reported). The group's common
 * labels are merged into a copy of the node's (node labels win); status is "healthy" and
 * last_seen the registration time. Registrations of one registry with the same TTL share
 * one lease and one keepalive. If the lease is lost, or the key is deleted by someone
 * else, the node is registered again (with backoff, each failure reported). */
ETCDREG_EXTERN int etcdreg_register(etcdreg_registry_t *reg, const char *group,
                                    const etcdreg_node_t *node, uint64_t ttl_ms,
                                    const etcdreg_register_opts_t *opts,
                                    const etcdreg_registration_cbs_t *cbs, void *data,
                                    etcdreg_registration_t **out);
/* Deregisters: deletes the node key if it is still on this registration's lease, revokes
 * the lease when no other registration uses it, then `ended` fires with ECANCELED. */
ETCDREG_EXTERN void etcdreg_registration_stop(etcdreg_registration_t *r);

/* `nodes` sorted by key; values that do not decode are skipped and counted in `skipped`. */
typedef void (*etcdreg_nodes_cb)(etcdreg_registry_t *reg, int status, const etcdreg_node_t *nodes,
                                 size_t count, size_t skipped, void *data);
ETCDREG_EXTERN int etcdreg_nodes_list(etcdreg_registry_t *reg, const char *group, etcdreg_nodes_cb cb,
                                      void *data);
/* Deletes a node (idempotent: absent is success), then, if the group has no node left,
 * deletes the group key in one transaction that fails if any node exists. */
ETCDREG_EXTERN int etcdreg_node_delete(etcdreg_registry_t *reg, const char *group, const char *id,
                                       const char *exporter_type, etcdreg_status_cb cb, void *data);

/* ---- watches ---- */

typedef enum {
  ETCDREG_REG_EVENT_CREATE = 0,
  ETCDREG_REG_EVENT_UPDATE = 1,
  ETCDREG_REG_EVENT_DELETE = 2
} etcdreg_reg_event_type_t;

ETCDREG_EXTERN const char *etcdreg_reg_event_type_name(etcdreg_reg_event_type_t type);

typedef struct etcdreg_event {
  etcdreg_reg_event_type_t type;
  const char *group;
  const etcdreg_node_t *node;          /* node events; deletes carry the node as it was */
  const etcdreg_group_t *group_config; /* group config events; deletes carry it as it was */
  int64_t revision;
} etcdreg_event_t;

typedef struct etcdreg_registry_watch_cbs {
  void (*ready)(etcdreg_registry_watch_t *w, void *data);  /* once, when established */
  void (*event)(etcdreg_registry_watch_t *w, const etcdreg_event_t *ev, void *data);
  /* Exactly once: ECANCELED (cancel), ECLOSED (registry closed), or an error. */
  void (*ended)(etcdreg_registry_watch_t *w, int status, const char *message, void *data);
} etcdreg_registry_watch_cbs_t;

/* Every group and node under base. After a compaction the watch re-reads the current
 * state and reports the differences as events, so the application's view converges;
 * reconnects resume without loss. */
ETCDREG_EXTERN int etcdreg_registry_watch_services(etcdreg_registry_t *reg,
                                                   const etcdreg_registry_watch_cbs_t *cbs,
                                                   void *data, etcdreg_registry_watch_t **out);
/* One group: its config key and everything under "<base>/<group>/". */
ETCDREG_EXTERN int etcdreg_registry_watch_group(etcdreg_registry_t *reg, const char *group,
                                                const etcdreg_registry_watch_cbs_t *cbs, void *data,
                                                etcdreg_registry_watch_t **out);
/* The nodes of one group. */
ETCDREG_EXTERN int etcdreg_registry_watch_group_nodes(etcdreg_registry_t *reg, const char *group,
                                                      const etcdreg_registry_watch_cbs_t *cbs,
                                                      void *data, etcdreg_registry_watch_t **out);
ETCDREG_EXTERN void etcdreg_registry_watch_cancel(etcdreg_registry_watch_t *w);

#ifdef __cplusplus
}
#endif
#endif
