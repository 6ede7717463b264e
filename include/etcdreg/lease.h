/* etcdreg/lease.h - leases: grant, revoke, time-to-live, list, and keepalive.
 *
 * Same rules as etcdreg/client.h: loop thread only; inputs copied; results borrowed for
 * the callback; a call that returns 0 fires its callback exactly once, later. Lease ids
 * are 64-bit (in JavaScript they need BigInt). TTLs are in seconds, as etcd counts them. */
#ifndef ETCDREG_LEASE_H
#define ETCDREG_LEASE_H

#include "etcdreg/client.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct etcdreg_lease_grant_result {
  etcdreg_header_t header;
  int64_t id;   /* the lease id (chosen by the server unless one was asked for) */
  int64_t ttl;  /* the TTL granted, in seconds (the server may raise a small one) */
} etcdreg_lease_grant_result_t;

typedef struct etcdreg_lease_revoke_result {
  etcdreg_header_t header;
} etcdreg_lease_revoke_result_t;

typedef struct etcdreg_bytes {
  const uint8_t *data;
  size_t len;
} etcdreg_bytes_t;

typedef struct etcdreg_lease_ttl_result {
  etcdreg_header_t header;
  int64_t id;
  int64_t ttl;          /* seconds left; -1 when the lease has expired or does not exist */
  int64_t granted_ttl;  /* the TTL it was granted with */
  const etcdreg_bytes_t *keys; /* attached keys, when asked for */
  size_t key_count;
} etcdreg_lease_ttl_result_t;

typedef struct etcdreg_lease_list_result {
  etcdreg_header_t header;
  const int64_t *ids;
  size_t count;
} etcdreg_lease_list_result_t;

typedef void (*etcdreg_lease_grant_cb)(etcdreg_request_t *req, int status,
                                       const etcdreg_lease_grant_result_t *res, void *data);
typedef void (*etcdreg_lease_revoke_cb)(etcdreg_request_t *req, int status,
                                        const etcdreg_lease_revoke_result_t *res, void *data);
typedef void (*etcdreg_lease_ttl_cb)(etcdreg_request_t *req, int status,
                                     const etcdreg_lease_ttl_result_t *res, void *data);
typedef void (*etcdreg_lease_list_cb)(etcdreg_request_t *req, int status,
                                      const etcdreg_lease_list_result_t *res, void *data);

/* Grants a lease of `ttl_s` seconds (>= 1). `id` 0 lets the server choose. Lease calls
 * are retried across reconnections within their deadline (`timeout_ms`, 0 = the client's
 * request timeout). ETCDREG_EINVAL for ttl_s < 1 or id < 0. */
ETCDREG_EXTERN int etcdreg_lease_grant(etcdreg_client_t *c, int64_t ttl_s, int64_t id,
                                       uint64_t timeout_ms, etcdreg_lease_grant_cb cb, void *data,
                                       etcdreg_request_t **req_out);
/* Revokes a lease; its keys are deleted at once. ETCDREG_ELEASENOTFOUND when unknown. */
ETCDREG_EXTERN int etcdreg_lease_revoke(etcdreg_client_t *c, int64_t id, uint64_t timeout_ms,
                                        etcdreg_lease_revoke_cb cb, void *data,
                                        etcdreg_request_t **req_out);
/* Time left on a lease, and with `keys` set the keys attached to it. */
ETCDREG_EXTERN int etcdreg_lease_time_to_live(etcdreg_client_t *c, int64_t id, int keys,
                                              uint64_t timeout_ms, etcdreg_lease_ttl_cb cb,
                                              void *data, etcdreg_request_t **req_out);
/* Every lease the server knows. */
ETCDREG_EXTERN int etcdreg_lease_list(etcdreg_client_t *c, uint64_t timeout_ms,
                                      etcdreg_lease_list_cb cb, void *data,
                                      etcdreg_request_t **req_out);

/* ---- keepalive ---- */

typedef struct etcdreg_keepalive etcdreg_keepalive_t;

typedef struct etcdreg_keepalive_cbs {
  /* Each successful renewal, with the TTL the server reset the lease to. May be NULL. */
  void (*renewed)(etcdreg_keepalive_t *k, int64_t ttl, void *data);
  /* Exactly once, when the keepalive ends; the handle is freed when it returns.
   * status: ETCDREG_ELEASELOST (the server answered TTL 0: the lease expired or was
   * revoked; or no answer came within the TTL: the server may still hold the lease but
   * nothing can be promised), ETCDREG_ECANCELED (etcdreg_lease_keepalive_stop),
   * ETCDREG_ECLOSED (the client closed). `reason` is borrowed. */
  void (*ended)(etcdreg_keepalive_t *k, int status, const char *reason, void *data);
} etcdreg_keepalive_cbs_t;

/* Keeps lease `id` alive until stopped: a keepalive at a third of the TTL, resent every
 * 500 ms while unanswered, all leases of the client on one LeaseKeepAlive stream that
 * moves to the new connection after a reconnect. `ttl_s` is the TTL the lease was
 * granted with (it bounds how long an unanswered lease is presumed alive). The first
 * keepalive goes out at once. ETCDREG_EEXIST when `id` is already kept alive by this
 * client; ETCDREG_EINVAL for id <= 0 or ttl_s < 1. */
ETCDREG_EXTERN int etcdreg_lease_keepalive_start(etcdreg_client_t *c, int64_t id, int64_t ttl_s,
                                                 const etcdreg_keepalive_cbs_t *cbs, void *data,
                                                 etcdreg_keepalive_t **out);
/* Stops keeping the lease alive (it then expires after its TTL unless revoked). `ended`
 * fires later with ETCDREG_ECANCELED. No-op once ended has been scheduled. */
ETCDREG_EXTERN void etcdreg_lease_keepalive_stop(etcdreg_keepalive_t *k);
ETCDREG_EXTERN int64_t etcdreg_keepalive_lease_id(const etcdreg_keepalive_t *k);

#ifdef __cplusplus
}
#endif
#endif
