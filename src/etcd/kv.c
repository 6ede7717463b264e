/* KV service: Range, Put, DeleteRange, Txn, Compact. Requests are built on an arena
 * (they borrow the caller's bytes until packed), responses are converted to the public
 * result structs on another arena that lives for the callback. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define TXN_MAX_OPS 128
#define TXN_MAX_DEPTH 16

size_t etcdreg_prefix_end(const void *prefix, size_t prefix_len, uint8_t *out) {
  const uint8_t *p = prefix;
  size_t n = prefix_len;
  while (n > 0 && p[n - 1] == 0xff) n--;
  if (n == 0) {
    out[0] = 0;
    return 1;
  }
  memcpy(out, p, n);
  out[n - 1]++;
  return n;
}

static ProtobufCBinaryData bin(const void *p, size_t n) {
  ProtobufCBinaryData b;
  b.data = (uint8_t *)p;
  b.len = n;
  return b;
}

/* Key and end of a key/prefix/range selection. */
static int build_range_keys(etcdreg_arena_t *a, const void *key, size_t key_len, int prefix,
                            const void *range_end, size_t range_end_len,
                            ProtobufCBinaryData *k, ProtobufCBinaryData *end) {
  if (key_len && !key) return ETCDREG_EINVAL;
  if (prefix) {
    if (key_len == 0) { /* every key */
      *k = bin("\0", 1);
      *end = bin("\0", 1);
      return 0;
    }
    uint8_t *e = etcdreg_arena_alloc(a, key_len);
    if (!e) return ETCDREG_ENOMEM;
    *k = bin(key, key_len);
    *end = bin(e, etcdreg_prefix_end(key, key_len, e));
    return 0;
  }
  if (key_len == 0) return ETCDREG_EINVAL; /* etcd: "key is not provided" */
  if (range_end_len && !range_end) return ETCDREG_EINVAL;
  *k = bin(key, key_len);
  *end = bin(range_end, range_end_len);
  return 0;
}

static int build_range(etcdreg_arena_t *a, Etcdserverpb__RangeRequest *r, const void *key,
                       size_t key_len, const etcdreg_range_opts_t *o) {
  static const etcdreg_range_opts_t none;
  if (!o) o = &none;
  etcdserverpb__range_request__init(r);
  if ((unsigned)o->sort_order > ETCDREG_SORT_DESCEND || (unsigned)o->sort_target > ETCDREG_SORT_BY_VALUE ||
      o->limit < 0 || o->revision < 0)
    return ETCDREG_EINVAL;
  int rv = build_range_keys(a, key, key_len, o->prefix, o->range_end, o->range_end_len, &r->key,
                            &r->range_end);
  if (rv) return rv;
  r->limit = o->limit;
  r->revision = o->revision;
  r->sort_order = (Etcdserverpb__RangeRequest__SortOrder)o->sort_order;
  r->sort_target = (Etcdserverpb__RangeRequest__SortTarget)o->sort_target;
  r->serializable = o->serializable != 0;
  r->keys_only = o->keys_only != 0;
  r->count_only = o->count_only != 0;
  r->min_mod_revision = o->min_mod_revision;
  r->max_mod_revision = o->max_mod_revision;
  r->min_create_revision = o->min_create_revision;
  r->max_create_revision = o->max_create_revision;
  return 0;
}

static int build_put(Etcdserverpb__PutRequest *r, const void *key, size_t key_len,
                     const void *value, size_t value_len, const etcdreg_put_opts_t *o) {
  static const etcdreg_put_opts_t none;
  if (!o) o = &none;
  if (!key || key_len == 0 || (value_len && !value) || o->lease < 0) return ETCDREG_EINVAL;
  if (o->ignore_value && value_len) return ETCDREG_EINVAL; /* etcd: "value is provided" */
  if (o->ignore_lease && o->lease) return ETCDREG_EINVAL;  /* etcd: "lease is provided" */
  etcdserverpb__put_request__init(r);
  r->key = bin(key, key_len);
  r->value = bin(value, value_len);
  r->lease = o->lease;
  r->prev_kv = o->prev_kv != 0;
  r->ignore_value = o->ignore_value != 0;
  r->ignore_lease = o->ignore_lease != 0;
  return 0;
}

static int build_delete(etcdreg_arena_t *a, Etcdserverpb__DeleteRangeRequest *r, const void *key,
                        size_t key_len, const etcdreg_delete_opts_t *o) {
  static const etcdreg_delete_opts_t none;
  if (!o) o = &none;
  etcdserverpb__delete_range_request__init(r);
  int rv = build_range_keys(a, key, key_len, o->prefix, o->range_end, o->range_end_len, &r->key,
                            &r->range_end);
  if (rv) return rv;
  r->prev_kv = o->prev_kv != 0;
  return 0;
}

static int build_txn(etcdreg_arena_t *a, Etcdserverpb__TxnRequest *r, const etcdreg_txn_t *t, int depth);

static int build_op(etcdreg_arena_t *a, Etcdserverpb__RequestOp *op, const etcdreg_txn_op_t *in, int depth) {
  etcdserverpb__request_op__init(op);
  int rv;
  switch (in->type) {
  case ETCDREG_OP_RANGE: {
    Etcdserverpb__RangeRequest *r = ETCDREG_ARENA_NEW(a, Etcdserverpb__RangeRequest, 1);
    if (!r) return ETCDREG_ENOMEM;
    if ((rv = build_range(a, r, in->key, in->key_len, in->range))) return rv;
    op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
    op->request_range = r;
    return 0;
  }
  case ETCDREG_OP_PUT: {
    Etcdserverpb__PutRequest *r = ETCDREG_ARENA_NEW(a, Etcdserverpb__PutRequest, 1);
    if (!r) return ETCDREG_ENOMEM;
    if ((rv = build_put(r, in->key, in->key_len, in->value, in->value_len, in->put))) return rv;
    op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    op->request_put = r;
    return 0;
  }
  case ETCDREG_OP_DELETE: {
    Etcdserverpb__DeleteRangeRequest *r = ETCDREG_ARENA_NEW(a, Etcdserverpb__DeleteRangeRequest, 1);
    if (!r) return ETCDREG_ENOMEM;
    if ((rv = build_delete(a, r, in->key, in->key_len, in->del))) return rv;
    op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
    op->request_delete_range = r;
    return 0;
  }
  case ETCDREG_OP_TXN: {
    if (!in->txn) return ETCDREG_EINVAL;
    Etcdserverpb__TxnRequest *r = ETCDREG_ARENA_NEW(a, Etcdserverpb__TxnRequest, 1);
    if (!r) return ETCDREG_ENOMEM;
    if ((rv = build_txn(a, r, in->txn, depth + 1))) return rv;
    op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN;
    op->request_txn = r;
    return 0;
  }
  default: return ETCDREG_EINVAL;
  }
}

static int build_ops(etcdreg_arena_t *a, const etcdreg_txn_op_t *in, size_t n,
                     Etcdserverpb__RequestOp ***out, size_t *n_out, int depth) {
  if (n > TXN_MAX_OPS || (n && !in)) return ETCDREG_EINVAL;
  *n_out = n;
  if (n == 0) return 0;
  Etcdserverpb__RequestOp **ptrs = ETCDREG_ARENA_NEW(a, Etcdserverpb__RequestOp *, n);
  Etcdserverpb__RequestOp *ops = ETCDREG_ARENA_NEW(a, Etcdserverpb__RequestOp, n);
  if (!ptrs || !ops) return ETCDREG_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    int rv = build_op(a, &ops[i], &in[i], depth);
    if (rv) return rv;
    ptrs[i] = &ops[i];
  }
  *out = ptrs;
  return 0;
}

static int build_compare(etcdreg_arena_t *a, Etcdserverpb__Compare *c, const etcdreg_compare_t *in) {
  etcdserverpb__compare__init(c);
  if ((unsigned)in->result > ETCDREG_CMP_NOT_EQUAL) return ETCDREG_EINVAL;
  ProtobufCBinaryData key, end;
  int rv = build_range_keys(a, in->key, in->key_len, in->prefix, in->range_end, in->range_end_len, &key, &end);
  if (rv) return rv;
  c->key = key;
  c->range_end = end;
  c->result = (Etcdserverpb__Compare__CompareResult)in->result;
  switch (in->target) {
  case ETCDREG_CMP_VERSION:
    c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION;
    c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
    c->version = in->number;
    break;
  case ETCDREG_CMP_CREATE:
    c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE;
    c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
    c->create_revision = in->number;
    break;
  case ETCDREG_CMP_MOD:
    c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD;
    c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
    c->mod_revision = in->number;
    break;
  case ETCDREG_CMP_VALUE:
    if (in->value_len && !in->value) return ETCDREG_EINVAL;
    c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE;
    c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
    c->value = bin(in->value, in->value_len);
    break;
  case ETCDREG_CMP_LEASE:
    c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE;
    c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE;
    c->lease = in->number;
    break;
  default: return ETCDREG_EINVAL;
  }
  return 0;
}

static int build_txn(etcdreg_arena_t *a, Etcdserverpb__TxnRequest *r, const etcdreg_txn_t *t, int depth) {
  if (depth > TXN_MAX_DEPTH) return ETCDREG_EINVAL;
  etcdserverpb__txn_request__init(r);
  if (t->compare_count > TXN_MAX_OPS || (t->compare_count && !t->compares)) return ETCDREG_EINVAL;
  if (t->compare_count) {
    r->compare = ETCDREG_ARENA_NEW(a, Etcdserverpb__Compare *, t->compare_count);
    Etcdserverpb__Compare *cs = ETCDREG_ARENA_NEW(a, Etcdserverpb__Compare, t->compare_count);
    if (!r->compare || !cs) return ETCDREG_ENOMEM;
    for (size_t i = 0; i < t->compare_count; i++) {
      int rv = build_compare(a, &cs[i], &t->compares[i]);
      if (rv) return rv;
      r->compare[i] = &cs[i];
    }
    r->n_compare = t->compare_count;
  }
  int rv = build_ops(a, t->success, t->success_count, &r->success, &r->n_success, depth);
  if (rv) return rv;
  return build_ops(a, t->failure, t->failure_count, &r->failure, &r->n_failure, depth);
}

/* ---- results ---- */


static int kvs_from_pb(etcdreg_arena_t *a, Mvccpb__KeyValue **kvs, size_t n, const etcdreg_kv_t **out) {
  *out = NULL;
  if (n == 0) return 0;
  etcdreg_kv_t *arr = ETCDREG_ARENA_NEW(a, etcdreg_kv_t, n);
  if (!arr) return ETCDREG_ENOMEM;
  for (size_t i = 0; i < n; i++) etcdreg__kv_from_pb(&arr[i], kvs[i]);
  *out = arr;
  return 0;
}

static int range_from_pb(etcdreg_arena_t *a, etcdreg_range_result_t *r, const Etcdserverpb__RangeResponse *m) {
  memset(r, 0, sizeof(*r));
  etcdreg__header_from_pb(&r->header, m->header);
  r->kv_count = m->n_kvs;
  r->more = m->more;
  r->count = m->count;
  return kvs_from_pb(a, m->kvs, m->n_kvs, &r->kvs);
}

static int put_from_pb(etcdreg_arena_t *a, etcdreg_put_result_t *r, const Etcdserverpb__PutResponse *m) {
  memset(r, 0, sizeof(*r));
  etcdreg__header_from_pb(&r->header, m->header);
  if (m->prev_kv) {
    etcdreg_kv_t *kv = ETCDREG_ARENA_NEW(a, etcdreg_kv_t, 1);
    if (!kv) return ETCDREG_ENOMEM;
    etcdreg__kv_from_pb(kv, m->prev_kv);
    r->prev_kv = kv;
  }
  return 0;
}

static int delete_from_pb(etcdreg_arena_t *a, etcdreg_delete_result_t *r,
                          const Etcdserverpb__DeleteRangeResponse *m) {
  memset(r, 0, sizeof(*r));
  etcdreg__header_from_pb(&r->header, m->header);
  r->deleted = m->deleted;
  r->prev_kv_count = m->n_prev_kvs;
  return kvs_from_pb(a, m->prev_kvs, m->n_prev_kvs, &r->prev_kvs);
}

static int txn_from_pb(etcdreg_arena_t *a, etcdreg_txn_result_t *r, const Etcdserverpb__TxnResponse *m) {
  memset(r, 0, sizeof(*r));
  etcdreg__header_from_pb(&r->header, m->header);
  r->succeeded = m->succeeded;
  if (m->n_responses == 0) return 0;
  etcdreg_op_result_t *ops = ETCDREG_ARENA_NEW(a, etcdreg_op_result_t, m->n_responses);
  if (!ops) return ETCDREG_ENOMEM;
  for (size_t i = 0; i < m->n_responses; i++) {
    const Etcdserverpb__ResponseOp *op = m->responses[i];
    int rv = ETCDREG_EPROTO;
    switch (op->response_case) {
    case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE:
      ops[i].type = ETCDREG_OP_RANGE;
      rv = range_from_pb(a, &ops[i].u.range, op->response_range);
      break;
    case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT:
      ops[i].type = ETCDREG_OP_PUT;
      rv = put_from_pb(a, &ops[i].u.put, op->response_put);
      break;
    case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE:
      ops[i].type = ETCDREG_OP_DELETE;
      rv = delete_from_pb(a, &ops[i].u.del, op->response_delete_range);
      break;
    case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN: {
      etcdreg_txn_result_t *nested = ETCDREG_ARENA_NEW(a, etcdreg_txn_result_t, 1);
      if (!nested) return ETCDREG_ENOMEM;
      ops[i].type = ETCDREG_OP_TXN;
      rv = txn_from_pb(a, nested, op->response_txn);
      ops[i].u.txn = nested;
      break;
    }
    default: break;
    }
    if (rv) return rv;
  }
  r->responses = ops;
  r->response_count = m->n_responses;
  return 0;
}

/* ---- dispatch: decoded response -> the user's callback ---- */

static int compact_from_pb(etcdreg_arena_t *a, etcdreg_compact_result_t *r,
                           const Etcdserverpb__CompactionResponse *m) {
  (void)a;
  etcdreg__header_from_pb(&r->header, m->header);
  return 0;
}

ETCDREG_DEFINE_DISPATCH(dispatch_range, etcdreg_range_cb, etcdreg_range_result_t, Etcdserverpb__RangeResponse, range_from_pb)
ETCDREG_DEFINE_DISPATCH(dispatch_put, etcdreg_put_cb, etcdreg_put_result_t, Etcdserverpb__PutResponse, put_from_pb)
ETCDREG_DEFINE_DISPATCH(dispatch_delete, etcdreg_delete_cb, etcdreg_delete_result_t, Etcdserverpb__DeleteRangeResponse, delete_from_pb)
ETCDREG_DEFINE_DISPATCH(dispatch_txn, etcdreg_txn_cb, etcdreg_txn_result_t, Etcdserverpb__TxnResponse, txn_from_pb)
ETCDREG_DEFINE_DISPATCH(dispatch_compact, etcdreg_compact_cb, etcdreg_compact_result_t, Etcdserverpb__CompactionResponse, compact_from_pb)

/* ---- public calls ---- */


int etcdreg_range(etcdreg_client_t *c, const void *key, size_t key_len,
                  const etcdreg_range_opts_t *opts, etcdreg_range_cb cb, void *data,
                  etcdreg_request_t **req_out) {
  if (!c || !cb) return ETCDREG_EINVAL;
  if (c->closing) return ETCDREG_ECLOSED;
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  Etcdserverpb__RangeRequest r;
  int rv = build_range(&a, &r, key, key_len, opts);
  if (!rv)
    rv = etcdreg__submit(c, REQ_RANGE, 0, "/etcdserverpb.KV/Range", &r.base,
                &etcdserverpb__range_response__descriptor, dispatch_range, (void (*)(void))cb, data,
                opts ? opts->timeout_ms : 0, req_out);
  etcdreg_arena_free(&a);
  return rv;
}

int etcdreg_put(etcdreg_client_t *c, const void *key, size_t key_len, const void *value,
                size_t value_len, const etcdreg_put_opts_t *opts, etcdreg_put_cb cb, void *data,
                etcdreg_request_t **req_out) {
  if (!c || !cb) return ETCDREG_EINVAL;
  if (c->closing) return ETCDREG_ECLOSED;
  Etcdserverpb__PutRequest r;
  int rv = build_put(&r, key, key_len, value, value_len, opts);
  if (rv) return rv;
  return etcdreg__submit(c, REQ_PUT, 1, "/etcdserverpb.KV/Put", &r.base, &etcdserverpb__put_response__descriptor,
                dispatch_put, (void (*)(void))cb, data, opts ? opts->timeout_ms : 0, req_out);
}

int etcdreg_delete(etcdreg_client_t *c, const void *key, size_t key_len,
                   const etcdreg_delete_opts_t *opts, etcdreg_delete_cb cb, void *data,
                   etcdreg_request_t **req_out) {
  if (!c || !cb) return ETCDREG_EINVAL;
  if (c->closing) return ETCDREG_ECLOSED;
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  Etcdserverpb__DeleteRangeRequest r;
  int rv = build_delete(&a, &r, key, key_len, opts);
  if (!rv)
    rv = etcdreg__submit(c, REQ_DELETE, 1, "/etcdserverpb.KV/DeleteRange", &r.base,
                &etcdserverpb__delete_range_response__descriptor, dispatch_delete,
                (void (*)(void))cb, data, opts ? opts->timeout_ms : 0, req_out);
  etcdreg_arena_free(&a);
  return rv;
}

int etcdreg_txn(etcdreg_client_t *c, const etcdreg_txn_t *txn, etcdreg_txn_cb cb, void *data,
                etcdreg_request_t **req_out) {
  if (!c || !cb || !txn) return ETCDREG_EINVAL;
  if (c->closing) return ETCDREG_ECLOSED;
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  Etcdserverpb__TxnRequest r;
  int rv = build_txn(&a, &r, txn, 0);
  if (!rv)
    rv = etcdreg__submit(c, REQ_TXN, 1, "/etcdserverpb.KV/Txn", &r.base, &etcdserverpb__txn_response__descriptor,
                dispatch_txn, (void (*)(void))cb, data, txn->timeout_ms, req_out);
  etcdreg_arena_free(&a);
  return rv;
}

int etcdreg_compact(etcdreg_client_t *c, int64_t revision, int physical, uint64_t timeout_ms,
                    etcdreg_compact_cb cb, void *data, etcdreg_request_t **req_out) {
  if (!c || !cb || revision <= 0) return ETCDREG_EINVAL;
  if (c->closing) return ETCDREG_ECLOSED;
  Etcdserverpb__CompactionRequest r;
  etcdserverpb__compaction_request__init(&r);
  r.revision = revision;
  r.physical = physical != 0;
  return etcdreg__submit(c, REQ_COMPACT, 1, "/etcdserverpb.KV/Compact", &r.base,
                &etcdserverpb__compaction_response__descriptor, dispatch_compact,
                (void (*)(void))cb, data, timeout_ms, req_out);
}
