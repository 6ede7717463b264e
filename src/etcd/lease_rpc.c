/* Lease service, unary calls: LeaseGrant, LeaseRevoke, LeaseTimeToLive, LeaseLeases.
 * Same shape as kv.c: the request is built on the stack and packed by
 * etcdreg__request_start, the decoded response is converted to the public result struct
 * on an arena that lives for the callback. (The LeaseKeepAlive stream is keepalive.c.)
 *
 * Request kinds: etcdreg_req_kind_t has no lease values; the kind is informational only,
 * so grant is filed as REQ_PUT and the others as REQ_RANGE. What matters for retries is
 * is_write: a grant is not replayed once sent (a replay could leave a second, leaked
 * lease behind when the server chose the id), revoke, time-to-live and list are (a
 * replayed revoke just answers "lease not found"). */
#include <stdlib.h>
#include <string.h>

#include "etcdreg/lease.h"
#include "internal.h"

/* ---- results ---- */

static int grant_from_pb(etcdreg_arena_t *a, etcdreg_lease_grant_result_t *r,
                         const Etcdserverpb__LeaseGrantResponse *m) {
  (void)a;
  memset(r, 0, sizeof(*r));
  /* etcd reports some grant failures in the `error` field of a successful answer. */
  if (m->error && m->error[0]) return ETCDREG_EINTERNAL;
  etcdreg__header_from_pb(&r->header, m->header);
  r->id = m->id;
  r->ttl = m->ttl;
  return 0;
}

static int revoke_from_pb(etcdreg_arena_t *a, etcdreg_lease_revoke_result_t *r,
                          const Etcdserverpb__LeaseRevokeResponse *m) {
  (void)a;
  memset(r, 0, sizeof(*r));
  etcdreg__header_from_pb(&r->header, m->header);
  return 0;
}

static int ttl_from_pb(etcdreg_arena_t *a, etcdreg_lease_ttl_result_t *r,
                       const Etcdserverpb__LeaseTimeToLiveResponse *m) {
  memset(r, 0, sizeof(*r));
  etcdreg__header_from_pb(&r->header, m->header);
  r->id = m->id;
  r->ttl = m->ttl;
  r->granted_ttl = m->grantedttl;
  if (m->n_keys == 0) return 0;
  etcdreg_bytes_t *keys = ETCDREG_ARENA_NEW(a, etcdreg_bytes_t, m->n_keys);
  if (!keys) return ETCDREG_ENOMEM;
  for (size_t i = 0; i < m->n_keys; i++) {
    keys[i].data = m->keys[i].data ? m->keys[i].data : (const uint8_t *)"";
    keys[i].len = m->keys[i].len;
  }
  r->keys = keys;
  r->key_count = m->n_keys;
  return 0;
}

static int list_from_pb(etcdreg_arena_t *a, etcdreg_lease_list_result_t *r,
                        const Etcdserverpb__LeaseLeasesResponse *m) {
  memset(r, 0, sizeof(*r));
  etcdreg__header_from_pb(&r->header, m->header);
  if (m->n_leases == 0) return 0;
  int64_t *ids = ETCDREG_ARENA_NEW(a, int64_t, m->n_leases);
  if (!ids) return ETCDREG_ENOMEM;
  for (size_t i = 0; i < m->n_leases; i++) {
    if (!m->leases[i]) return ETCDREG_EPROTO;
    ids[i] = m->leases[i]->id;
  }
  r->ids = ids;
  r->count = m->n_leases;
  return 0;
}

/* ---- dispatch: decoded response -> the user's callback ---- */

ETCDREG_DEFINE_DISPATCH(dispatch_grant, etcdreg_lease_grant_cb, etcdreg_lease_grant_result_t,
                Etcdserverpb__LeaseGrantResponse, grant_from_pb)
ETCDREG_DEFINE_DISPATCH(dispatch_revoke, etcdreg_lease_revoke_cb, etcdreg_lease_revoke_result_t,
                Etcdserverpb__LeaseRevokeResponse, revoke_from_pb)
ETCDREG_DEFINE_DISPATCH(dispatch_ttl, etcdreg_lease_ttl_cb, etcdreg_lease_ttl_result_t,
                Etcdserverpb__LeaseTimeToLiveResponse, ttl_from_pb)
ETCDREG_DEFINE_DISPATCH(dispatch_list, etcdreg_lease_list_cb, etcdreg_lease_list_result_t,
                Etcdserverpb__LeaseLeasesResponse, list_from_pb)

/* ---- public calls ---- */


int etcdreg_lease_grant(etcdreg_client_t *c, int64_t ttl_s, int64_t id, uint64_t timeout_ms,
                        etcdreg_lease_grant_cb cb, void *data, etcdreg_request_t **req_out) {
  if (!c || !cb || ttl_s < 1 || id < 0) return ETCDREG_EINVAL;
  if (c->closing) return ETCDREG_ECLOSED;
  Etcdserverpb__LeaseGrantRequest r;
  etcdserverpb__lease_grant_request__init(&r);
  r.ttl = ttl_s;
  r.id = id;
  return etcdreg__submit(c, REQ_PUT, 1, "/etcdserverpb.Lease/LeaseGrant", &r.base,
                &etcdserverpb__lease_grant_response__descriptor, dispatch_grant,
                (void (*)(void))cb, data, timeout_ms, req_out);
}

int etcdreg_lease_revoke(etcdreg_client_t *c, int64_t id, uint64_t timeout_ms,
                         etcdreg_lease_revoke_cb cb, void *data, etcdreg_request_t **req_out) {
  if (!c || !cb || id <= 0) return ETCDREG_EINVAL;
  if (c->closing) return ETCDREG_ECLOSED;
  Etcdserverpb__LeaseRevokeRequest r;
  etcdserverpb__lease_revoke_request__init(&r);
  r.id = id;
  return etcdreg__submit(c, REQ_RANGE, 0, "/etcdserverpb.Lease/LeaseRevoke", &r.base,
                &etcdserverpb__lease_revoke_response__descriptor, dispatch_revoke,
                (void (*)(void))cb, data, timeout_ms, req_out);
}

int etcdreg_lease_time_to_live(etcdreg_client_t *c, int64_t id, int keys, uint64_t timeout_ms,
                               etcdreg_lease_ttl_cb cb, void *data, etcdreg_request_t **req_out) {
  if (!c || !cb || id <= 0) return ETCDREG_EINVAL;
  if (c->closing) return ETCDREG_ECLOSED;
  Etcdserverpb__LeaseTimeToLiveRequest r;
  etcdserverpb__lease_time_to_live_request__init(&r);
  r.id = id;
  r.keys = keys != 0;
  return etcdreg__submit(c, REQ_RANGE, 0, "/etcdserverpb.Lease/LeaseTimeToLive", &r.base,
                &etcdserverpb__lease_time_to_live_response__descriptor, dispatch_ttl,
                (void (*)(void))cb, data, timeout_ms, req_out);
}

int etcdreg_lease_list(etcdreg_client_t *c, uint64_t timeout_ms, etcdreg_lease_list_cb cb,
                       void *data, etcdreg_request_t **req_out) {
  if (!c || !cb) return ETCDREG_EINVAL;
  if (c->closing) return ETCDREG_ECLOSED;
  Etcdserverpb__LeaseLeasesRequest r;
  etcdserverpb__lease_leases_request__init(&r);
  return etcdreg__submit(c, REQ_RANGE, 0, "/etcdserverpb.Lease/LeaseLeases", &r.base,
                &etcdserverpb__lease_leases_response__descriptor, dispatch_list,
                (void (*)(void))cb, data, timeout_ms, req_out);
}
