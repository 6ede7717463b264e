/*
 * fake_server.c - a fake etcd gRPC server that misbehaves on demand (see fake_server.h).
 *
 * Structure: one listening handle; one fs_conn_t per accepted connection, holding the
 * TCP handle and an nghttp2 server session; one fs_stream_t per request stream (the
 * nghttp2 stream user data, also linked in its connection's list).  Input goes through
 * nghttp2_session_mem_recv; the callbacks only collect the request and decide, and every
 * submitted frame leaves after mem_recv returns: mem_send is drained into one heap
 * buffer per uv_write (several writes may be in flight).  A connection closes when the
 * peer ends it, on any I/O or HTTP/2 error, when nghttp2 wants neither to read nor to
 * write (after a GOAWAY once its streams are done) and every write has completed, or at
 * once for FS_CLOSE_AFTER_REQUEST.  The server is freed once the listener and every
 * connection are closed.
 */
#include "fake_server.h"

#include <nghttp2/nghttp2.h>
#include <protobuf-c/protobuf-c.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd/api/etcdserverpb/rpc.pb-c.h"

#define FS_READ_SIZE 65536
#define FS_MAX_BODY (4u * 1024 * 1024)
#define FS_MODE_QUEUE 64
#define FS_PING_OPAQUE "fsgoaway" /* 8 bytes: the two-step GOAWAY's PING */
#define FS_PATH_RANGE "/etcdserverpb.KV/Range"
#define FS_PATH_PUT "/etcdserverpb.KV/Put"
#define FS_CLUSTER_ID 0xfa4e5e7e7ull
#define FS_MEMBER_ID 0x1d2c3b4aull

typedef struct fs_conn fs_conn_t;

typedef struct fs_kv {
  struct fs_kv *next; /* sorted by key */
  uint8_t *key, *value;
  size_t key_len, value_len;
  int64_t create_revision, mod_revision, version, lease;
} fs_kv_t;

typedef struct fs_stream {
  struct fs_stream *prev, *next;
  int32_t id;
  char path[128];
  uint8_t *body; /* the request's DATA */
  size_t body_len, body_cap;
  int too_big;
  uint8_t *out; /* the response's DATA */
  size_t out_len, out_off;
  int trailer_status; /* >= 0: trailers with this grpc-status after the DATA; -1: none */
  int held;           /* answered when the two-step GOAWAY's PING is acknowledged */
} fs_stream_t;

struct fs_conn {
  fs_conn_t *prev, *next;
  fake_server_t *fs;
  uv_tcp_t tcp;
  nghttp2_session *session;
  fs_stream_t *streams;
  int32_t max_taken; /* highest stream id taken on (processed or about to be) */
  int closing;
  int kill;          /* close once the current input is processed */
  int waiting_ping;  /* two-step GOAWAY under way */
  size_t writes;     /* uv_write requests in flight */
  char rbuf[FS_READ_SIZE];
};

typedef struct fs_write {
  uv_write_t req;
  uint8_t *data;
} fs_write_t;

struct fake_server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  int port;
  fs_conn_t *conns;
  fs_mode_t mode;
  fs_mode_t queue[FS_MODE_QUEUE];
  size_t q_head, q_len;
  fs_stats_t st;
  fs_kv_t *kvs;
  int closing, listener_closed;
  int trace; /* FAKE_SERVER_TRACE set: events on stderr */
  void (*close_cb)(void *data);
  void *close_data;
};

static const char *const mode_names[FS_MODE_COUNT] = {
    "FS_NORMAL",
    "FS_MALFORMED_FRAME",
    "FS_GARBAGE_PREFIX",
    "FS_OVERSIZED_PREFIX",
    "FS_WRONG_CONTENT_TYPE",
    "FS_WRONG_CONTENT_TYPE_EMPTY",
    "FS_TRAILERS_ONLY_ERROR",
    "FS_GOAWAY_MIDSTREAM",
    "FS_GOAWAY_TWO_STEP",
    "FS_RST_STREAM",
    "FS_RST_REFUSED",
    "FS_INVALID_PROTOBUF",
    "FS_HTTP_500",
    "FS_HTTP_500_BODY",
    "FS_TRUNCATED_MESSAGE",
    "FS_NO_MESSAGE",
    "FS_TWO_MESSAGES",
    "FS_CLOSE_AFTER_REQUEST",
    "FS_SILENT",
};

static const char html_page[] =
    "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    "<body><h1>Bad Gateway</h1><p>The upstream etcd did not answer.</p></body></html>\n";
static const char http1_page[] =
    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
    "400 Bad Request";
static const char lease_message_encoded[] = "etcdserver%3A%20requested%20lease%20not%20found";

static void conn_close(fs_conn_t *c);
static void conn_flush(fs_conn_t *c);
static void fs_maybe_free(fake_server_t *fs);

/* ---- small helpers ---- */

__attribute__((format(printf, 2, 3))) static void trace(const fake_server_t *fs, const char *fmt, ...) {
  if (!fs->trace) return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "[fake_server:%d] ", fs->port);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static nghttp2_nv mknv(const char *name, const char *value) {
  nghttp2_nv nv = {(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value), NGHTTP2_NV_FLAG_NONE};
  return nv;
}

static int key_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl) {
  size_t n = al < bl ? al : bl;
  int c = n ? memcmp(a, b, n) : 0;
  if (c) return c;
  return al < bl ? -1 : al > bl ? 1 : 0;
}

static uint8_t *dup_bytes(const uint8_t *p, size_t len) {
  uint8_t *d = malloc(len ? len : 1);
  if (d && len) memcpy(d, p, len);
  return d;
}

/* A gRPC-framed copy of `msg` (prefix + payload). */
static uint8_t *frame_message(const uint8_t *msg, size_t len, size_t *out_len) {
  uint8_t *o = malloc(5 + len);
  if (!o) return NULL;
  o[0] = 0;
  o[1] = (uint8_t)(len >> 24);
  o[2] = (uint8_t)(len >> 16);
  o[3] = (uint8_t)(len >> 8);
  o[4] = (uint8_t)len;
  if (len) memcpy(o + 5, msg, len);
  *out_len = 5 + len;
  return o;
}

/* Percent-encodes a grpc-message value (everything outside 0x21-0x7e, '%' and ':'). */
static void percent_encode(const char *in, char *out, size_t out_len) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;
  for (const unsigned char *p = (const unsigned char *)in; *p && o + 4 < out_len; p++) {
    if (*p > 0x20 && *p < 0x7f && *p != '%' && *p != ':') {
      out[o++] = (char)*p;
    } else {
      out[o++] = '%';
      out[o++] = hex[*p >> 4];
      out[o++] = hex[*p & 15];
    }
  }
  if (out_len) out[o < out_len ? o : out_len - 1] = 0;
}

static fs_mode_t next_mode(fake_server_t *fs) {
  if (fs->q_len == 0) return fs->mode;
  fs_mode_t m = fs->queue[fs->q_head];
  fs->q_head = (fs->q_head + 1) % FS_MODE_QUEUE;
  fs->q_len--;
  return m;
}

/* ---- the store and the answers ---- */

static void fill_kv(Mvccpb__KeyValue *m, const fs_kv_t *kv, int keys_only) {
  mvccpb__key_value__init(m);
  m->key.data = kv->key;
  m->key.len = kv->key_len;
  if (!keys_only) {
    m->value.data = kv->value;
    m->value.len = kv->value_len;
  }
  m->create_revision = kv->create_revision;
  m->mod_revision = kv->mod_revision;
  m->version = kv->version;
  m->lease = kv->lease;
}

static int in_range(const fs_kv_t *kv, const Etcdserverpb__RangeRequest *rq) {
  int c = key_cmp(kv->key, kv->key_len, rq->key.data, rq->key.len);
  if (rq->range_end.len == 0) return c == 0;
  if (c < 0) return 0;
  if (rq->range_end.len == 1 && rq->range_end.data[0] == 0) return 1;
  return key_cmp(kv->key, kv->key_len, rq->range_end.data, rq->range_end.len) < 0;
}

static int answer_range(fake_server_t *fs, const uint8_t *pb, size_t pblen, uint8_t **out,
                        size_t *out_len, char *why, size_t why_len) {
  Etcdserverpb__RangeRequest *rq = etcdserverpb__range_request__unpack(NULL, pblen, pb);
  if (!rq) {
    snprintf(why, why_len, "grpc: error unmarshalling request: bad RangeRequest");
    return 13;
  }
  size_t total = 0;
  for (fs_kv_t *kv = fs->kvs; kv; kv = kv->next) total += (size_t)in_range(kv, rq);
  size_t n = rq->count_only ? 0 : total;
  if (rq->limit > 0 && (size_t)rq->limit < n) n = (size_t)rq->limit;
  Mvccpb__KeyValue *kvs = calloc(n ? n : 1, sizeof(*kvs));
  Mvccpb__KeyValue **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
  int rv = 0;
  if (!kvs || !ptrs) {
    snprintf(why, why_len, "fake server: out of memory");
    rv = 13;
    goto done;
  }
  size_t i = 0;
  for (fs_kv_t *kv = fs->kvs; kv && i < n; kv = kv->next) {
    if (!in_range(kv, rq)) continue;
    fill_kv(&kvs[i], kv, rq->keys_only);
    ptrs[i] = &kvs[i];
    i++;
  }
  Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
  hdr.cluster_id = FS_CLUSTER_ID;
  hdr.member_id = FS_MEMBER_ID;
  hdr.revision = fs->st.revision;
  hdr.raft_term = 2;
  Etcdserverpb__RangeResponse rr = ETCDSERVERPB__RANGE_RESPONSE__INIT;
  rr.header = &hdr;
  rr.n_kvs = n;
  rr.kvs = n ? ptrs : NULL;
  rr.more = n < total && !rq->count_only;
  rr.count = (int64_t)total;
  size_t size = etcdserverpb__range_response__get_packed_size(&rr);
  *out = malloc(size ? size : 1);
  if (!*out) {
    snprintf(why, why_len, "fake server: out of memory");
    rv = 13;
    goto done;
  }
  *out_len = etcdserverpb__range_response__pack(&rr, *out);
done:
  free(kvs);
  free(ptrs);
  etcdserverpb__range_request__free_unpacked(rq, NULL);
  return rv;
}

static int answer_put(fake_server_t *fs, const uint8_t *pb, size_t pblen, uint8_t **out,
                      size_t *out_len, char *why, size_t why_len) {
  Etcdserverpb__PutRequest *rq = etcdserverpb__put_request__unpack(NULL, pblen, pb);
  if (!rq) {
    snprintf(why, why_len, "grpc: error unmarshalling request: bad PutRequest");
    return 13;
  }
  int rv = 0;
  fs_kv_t **pp = &fs->kvs;
  while (*pp && key_cmp((*pp)->key, (*pp)->key_len, rq->key.data, rq->key.len) < 0) pp = &(*pp)->next;
  fs_kv_t *kv = *pp && key_cmp((*pp)->key, (*pp)->key_len, rq->key.data, rq->key.len) == 0 ? *pp : NULL;
  fs_kv_t prev = {0};
  uint8_t *new_value = NULL;
  if (!kv && (rq->ignore_value || rq->ignore_lease)) {
    snprintf(why, why_len, "etcdserver: key not found");
    rv = 3;
    goto done;
  }
  if (kv) prev = *kv; /* prev.value stays valid until freed below */
  if (!rq->ignore_value) {
    new_value = dup_bytes(rq->value.data, rq->value.len);
    if (!new_value) goto nomem;
  }
  if (!kv) {
    kv = calloc(1, sizeof(*kv));
    if (!kv || !(kv->key = dup_bytes(rq->key.data, rq->key.len))) {
      free(kv);
      kv = NULL;
      goto nomem;
    }
    kv->key_len = rq->key.len;
    kv->next = *pp;
    *pp = kv;
    kv->create_revision = fs->st.revision + 1;
  }
  fs->st.revision++;
  fs->st.puts_applied++;
  kv->mod_revision = fs->st.revision;
  kv->version++;
  if (!rq->ignore_value) {
    kv->value = new_value; /* the old one is prev.value, freed below */
    kv->value_len = rq->value.len;
    new_value = NULL;
  } else {
    prev.value = NULL; /* still in use */
  }
  if (!rq->ignore_lease) kv->lease = rq->lease;

  Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
  hdr.cluster_id = FS_CLUSTER_ID;
  hdr.member_id = FS_MEMBER_ID;
  hdr.revision = fs->st.revision;
  hdr.raft_term = 2;
  Etcdserverpb__PutResponse pr = ETCDSERVERPB__PUT_RESPONSE__INIT;
  pr.header = &hdr;
  Mvccpb__KeyValue pkv;
  if (rq->prev_kv && prev.key) {
    fs_kv_t p = prev;
    if (rq->ignore_value) p.value = kv->value; /* unchanged */
    fill_kv(&pkv, &p, 0);
    pr.prev_kv = &pkv;
  }
  size_t size = etcdserverpb__put_response__get_packed_size(&pr);
  *out = malloc(size ? size : 1);
  if (!*out) goto nomem;
  *out_len = etcdserverpb__put_response__pack(&pr, *out);
  goto done;
nomem:
  snprintf(why, why_len, "fake server: out of memory");
  rv = 13;
done:
  if (kv && prev.value && prev.value != kv->value) free(prev.value);
  free(new_value);
  etcdserverpb__put_request__free_unpacked(rq, NULL);
  return rv;
}

/* The response message (without prefix) for the stream's request, applying a Put:
 * 0, or a gRPC status with `why` (then *out is NULL). */
static int build_message(fake_server_t *fs, const fs_stream_t *s, uint8_t **out, size_t *out_len,
                         char *why, size_t why_len) {
  *out = NULL;
  *out_len = 0;
  int is_range = strcmp(s->path, FS_PATH_RANGE) == 0, is_put = strcmp(s->path, FS_PATH_PUT) == 0;
  if (!is_range && !is_put) {
    snprintf(why, why_len, "unknown method %s for the fake server", s->path);
    return 12;
  }
  if (s->too_big || s->body_len < 5 || s->body[0] != 0 ||
      (((size_t)s->body[1] << 24) | ((size_t)s->body[2] << 16) | ((size_t)s->body[3] << 8) |
       (size_t)s->body[4]) != s->body_len - 5) {
    snprintf(why, why_len, "grpc: error unmarshalling request: not one uncompressed message");
    return 13;
  }
  return is_range ? answer_range(fs, s->body + 5, s->body_len - 5, out, out_len, why, why_len)
                  : answer_put(fs, s->body + 5, s->body_len - 5, out, out_len, why, why_len);
}

/* ---- responses ---- */

static ssize_t fs_data_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                            size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                            void *user_data) {
  (void)user_data;
  fs_stream_t *s = source->ptr;
  size_t n = s->out_len - s->out_off;
  if (n > length) n = length;
  if (n) memcpy(buf, s->out + s->out_off, n);
  s->out_off += n;
  if (s->out_off == s->out_len) {
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    if (s->trailer_status >= 0) {
      char status[16];
      snprintf(status, sizeof(status), "%d", s->trailer_status);
      nghttp2_nv tr[1] = {mknv("grpc-status", status)};
      *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      if (nghttp2_submit_trailer(session, stream_id, tr, 1) != 0) return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
  }
  return (ssize_t)n;
}

/* HEADERS(:status, content-type), then `out` (taken over) as DATA, then trailers with
 * grpc-status `trailer_status` (>= 0) or END_STREAM on the last DATA (-1). */
static void respond_data(fs_conn_t *c, fs_stream_t *s, const char *status, const char *ctype,
                         uint8_t *out, size_t out_len, int trailer_status) {
  free(s->out);
  s->out = out;
  s->out_len = out ? out_len : 0;
  s->out_off = 0;
  s->trailer_status = trailer_status;
  nghttp2_nv nva[2] = {mknv(":status", status), mknv("content-type", ctype)};
  nghttp2_data_provider prd;
  prd.source.ptr = s;
  prd.read_callback = fs_data_read;
  if (nghttp2_submit_response(c->session, s->id, nva, 2, &prd) != 0) c->kill = 1;
}

/* One HEADERS with END_STREAM. `grpc_status` < 0: no grpc-status. */
static void respond_headers_only(fs_conn_t *c, fs_stream_t *s, const char *status, const char *ctype,
                                 int grpc_status, const char *encoded_message) {
  char gs[16];
  nghttp2_nv nva[4];
  size_t n = 0;
  nva[n++] = mknv(":status", status);
  nva[n++] = mknv("content-type", ctype);
  if (grpc_status >= 0) {
    snprintf(gs, sizeof(gs), "%d", grpc_status);
    nva[n++] = mknv("grpc-status", gs);
    if (encoded_message && *encoded_message) nva[n++] = mknv("grpc-message", encoded_message);
  }
  if (nghttp2_submit_response(c->session, s->id, nva, n, NULL) != 0) c->kill = 1;
}

static void respond_rst(fs_conn_t *c, fs_stream_t *s, uint32_t code) {
  if (nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, s->id, code) != 0) c->kill = 1;
}

/* The answer of the modes that process the request (a Put is applied). */
static void respond_processed(fs_conn_t *c, fs_stream_t *s, fs_mode_t mode) {
  uint8_t *msg = NULL, *out = NULL;
  size_t mlen = 0, olen = 0;
  char why[256], enc[512];
  int status = build_message(c->fs, s, &msg, &mlen, why, sizeof(why));
  if (status) {
    percent_encode(why, enc, sizeof(enc));
    respond_headers_only(c, s, "200", "application/grpc", status, enc);
    return;
  }
  switch (mode) {
  case FS_MALFORMED_FRAME:
    out = frame_message(msg, mlen, &olen);
    if (out) out[0] = 1; /* compressed, but no grpc-encoding */
    break;
  case FS_GARBAGE_PREFIX:
    olen = sizeof(http1_page) - 1;
    out = dup_bytes((const uint8_t *)http1_page, olen);
    break;
  case FS_OVERSIZED_PREFIX: {
    static const uint8_t big[] = {0x00, 0x7f, 0xff, 0xff, 0xff, 'a', 'b', 'c', 'd'};
    olen = sizeof(big);
    out = dup_bytes(big, olen);
    break;
  }
  case FS_INVALID_PROTOBUF: {
    static const uint8_t bad[] = {0x00, 0x00, 0x00, 0x00, 0x03, 0xff, 0xff, 0xff};
    olen = sizeof(bad);
    out = dup_bytes(bad, olen);
    break;
  }
  case FS_TRUNCATED_MESSAGE:
    out = frame_message(msg, mlen, &olen);
    olen = 5 + mlen / 2; /* the prefix still declares mlen */
    break;
  case FS_NO_MESSAGE:
    olen = 0;
    out = NULL;
    break;
  case FS_TWO_MESSAGES: {
    size_t one = 0;
    uint8_t *f = frame_message(msg, mlen, &one);
    out = f ? malloc(2 * one) : NULL;
    if (out) {
      memcpy(out, f, one);
      memcpy(out + one, f, one);
      olen = 2 * one;
    }
    free(f);
    break;
  }
  default: /* FS_NORMAL, FS_GOAWAY_TWO_STEP */
    out = frame_message(msg, mlen, &olen);
    break;
  }
  free(msg);
  if (!out && olen) {
    respond_headers_only(c, s, "200", "application/grpc", 13, "fake%20server%3A%20out%20of%20memory");
    return;
  }
  respond_data(c, s, "200", "application/grpc", out, olen, 0);
}

static void goaway(fs_conn_t *c, int32_t last_stream_id, const char *debug) {
  if (nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE, last_stream_id, NGHTTP2_NO_ERROR,
                            (const uint8_t *)debug, strlen(debug)) != 0)
    c->kill = 1;
}

/* A whole request is in: count it, take a mode and act. */
static void handle_request(fs_conn_t *c, fs_stream_t *s) {
  fake_server_t *fs = c->fs;
  fs_mode_t mode = next_mode(fs);
  fs->st.requests++;
  fs->st.last_stream_id = s->id;
  if (strcmp(s->path, FS_PATH_RANGE) == 0) fs->st.range_requests++;
  else if (strcmp(s->path, FS_PATH_PUT) == 0) fs->st.put_requests++;
  if (mode != FS_GOAWAY_MIDSTREAM && s->id > c->max_taken) c->max_taken = s->id;
  trace(fs, "conn %p stream %d %s (%zu bytes): %s", (void *)c, s->id, s->path, s->body_len,
        fake_server_mode_name(mode));

  switch (mode) {
  case FS_NORMAL:
  case FS_MALFORMED_FRAME:
  case FS_GARBAGE_PREFIX:
  case FS_OVERSIZED_PREFIX:
  case FS_INVALID_PROTOBUF:
  case FS_TRUNCATED_MESSAGE:
  case FS_NO_MESSAGE:
  case FS_TWO_MESSAGES:
    respond_processed(c, s, mode);
    break;
  case FS_WRONG_CONTENT_TYPE: {
    size_t n = sizeof(html_page) - 1;
    respond_data(c, s, "200", "text/html; charset=utf-8", dup_bytes((const uint8_t *)html_page, n), n, -1);
    break;
  }
  case FS_WRONG_CONTENT_TYPE_EMPTY:
    respond_headers_only(c, s, "200", "text/html; charset=utf-8", -1, NULL);
    break;
  case FS_TRAILERS_ONLY_ERROR:
    respond_headers_only(c, s, "200", "application/grpc", 5, lease_message_encoded);
    break;
  case FS_GOAWAY_MIDSTREAM:
    if (c->max_taken > s->id) {
      /* A later stream was already taken on: GOAWAY cannot exclude this one, so refuse
       * it explicitly (still provably not processed). */
      respond_rst(c, s, NGHTTP2_REFUSED_STREAM);
    }
    goaway(c, c->max_taken, "fake server: graceful shutdown");
    break;
  case FS_GOAWAY_TWO_STEP:
    s->held = 1;
    if (!c->waiting_ping) {
      c->waiting_ping = 1;
      if (nghttp2_submit_shutdown_notice(c->session) != 0 ||
          nghttp2_submit_ping(c->session, NGHTTP2_FLAG_NONE, (const uint8_t *)FS_PING_OPAQUE) != 0)
        c->kill = 1;
    }
    break;
  case FS_RST_STREAM:
    respond_rst(c, s, NGHTTP2_INTERNAL_ERROR);
    break;
  case FS_RST_REFUSED:
    respond_rst(c, s, NGHTTP2_REFUSED_STREAM);
    break;
  case FS_HTTP_500:
    respond_headers_only(c, s, "500", "text/plain", -1, NULL);
    break;
  case FS_HTTP_500_BODY: {
    size_t n = sizeof(html_page) - 1;
    respond_data(c, s, "500", "text/html", dup_bytes((const uint8_t *)html_page, n), n, -1);
    break;
  }
  case FS_CLOSE_AFTER_REQUEST:
    c->kill = 1;
    break;
  case FS_SILENT:
  default:
    break;
  }
}

/* The two-step GOAWAY's PING came back: the final GOAWAY, then the held answers. */
static void finish_two_step(fs_conn_t *c) {
  c->waiting_ping = 0;
  goaway(c, c->max_taken, "graceful_stop");
  for (fs_stream_t *s = c->streams; s; s = s->next) {
    if (!s->held) continue;
    s->held = 0;
    respond_processed(c, s, FS_NORMAL);
  }
}

/* ---- nghttp2 callbacks ---- */

static void stream_free(fs_stream_t *s) {
  free(s->body);
  free(s->out);
  free(s);
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
  fs_conn_t *c = user_data;
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  fs_stream_t *s = calloc(1, sizeof(*s));
  if (!s) return NGHTTP2_ERR_CALLBACK_FAILURE;
  s->id = frame->hd.stream_id;
  s->trailer_status = -1;
  s->next = c->streams;
  if (c->streams) c->streams->prev = s;
  c->streams = s;
  nghttp2_session_set_stream_user_data(session, s->id, s);
  return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data) {
  (void)flags;
  (void)user_data;
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  fs_stream_t *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  if (!s) return 0;
  if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
    size_t n = valuelen < sizeof(s->path) - 1 ? valuelen : sizeof(s->path) - 1;
    memcpy(s->path, value, n);
    s->path[n] = 0;
  }
  return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *user_data) {
  (void)flags;
  (void)user_data;
  fs_stream_t *s = nghttp2_session_get_stream_user_data(session, stream_id);
  if (!s || s->too_big) return 0;
  if (s->body_len + len > FS_MAX_BODY) {
    s->too_big = 1;
    return 0;
  }
  if (s->body_len + len > s->body_cap) {
    size_t cap = s->body_cap ? s->body_cap : 256;
    while (cap < s->body_len + len) cap *= 2;
    uint8_t *b = realloc(s->body, cap);
    if (!b) {
      s->too_big = 1;
      return 0;
    }
    s->body = b;
    s->body_cap = cap;
  }
  memcpy(s->body + s->body_len, data, len);
  s->body_len += len;
  return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
  fs_conn_t *c = user_data;
  switch (frame->hd.type) {
  case NGHTTP2_HEADERS:
  case NGHTTP2_DATA:
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
      fs_stream_t *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
      if (s) handle_request(c, s);
    }
    break;
  case NGHTTP2_RST_STREAM:
    c->fs->st.rsts_received++;
    trace(c->fs, "conn %p received RST_STREAM(stream %d, error %u)", (void *)c, frame->hd.stream_id,
          frame->rst_stream.error_code);
    break;
  case NGHTTP2_PING:
    if ((frame->hd.flags & NGHTTP2_FLAG_ACK) && c->waiting_ping &&
        memcmp(frame->ping.opaque_data, FS_PING_OPAQUE, 8) == 0)
      finish_two_step(c);
    break;
  default:
    break;
  }
  return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
  (void)session;
  fs_conn_t *c = user_data;
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    c->fs->st.goaways_sent++;
    trace(c->fs, "conn %p sent GOAWAY(last_stream_id %d, error %u)", (void *)c,
          frame->goaway.last_stream_id, frame->goaway.error_code);
  } else if (frame->hd.type == NGHTTP2_RST_STREAM) {
    c->fs->st.rsts_sent++;
    trace(c->fs, "conn %p sent RST_STREAM(stream %d, error %u)", (void *)c, frame->hd.stream_id,
          frame->rst_stream.error_code);
  }
  return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data) {
  (void)error_code;
  fs_conn_t *c = user_data;
  fs_stream_t *s = nghttp2_session_get_stream_user_data(session, stream_id);
  if (!s) return 0;
  nghttp2_session_set_stream_user_data(session, stream_id, NULL);
  if (s->prev) s->prev->next = s->next;
  else c->streams = s->next;
  if (s->next) s->next->prev = s->prev;
  stream_free(s);
  return 0;
}

/* ---- connections ---- */

static void on_conn_closed(uv_handle_t *h) {
  fs_conn_t *c = h->data;
  fake_server_t *fs = c->fs;
  if (c->session) nghttp2_session_del(c->session);
  while (c->streams) {
    fs_stream_t *s = c->streams;
    c->streams = s->next;
    stream_free(s);
  }
  if (c->prev) c->prev->next = c->next;
  else fs->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  fs->st.open_connections--;
  free(c);
  fs_maybe_free(fs);
}

static void conn_close(fs_conn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  trace(c->fs, "conn %p closed", (void *)c);
  uv_read_stop((uv_stream_t *)&c->tcp);
  uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void conn_check_done(fs_conn_t *c) {
  if (c->closing || c->writes) return;
  if (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session)) conn_close(c);
}

static void on_write(uv_write_t *req, int status) {
  fs_write_t *w = (fs_write_t *)req;
  fs_conn_t *c = req->data;
  free(w->data);
  free(w);
  c->writes--;
  if (status < 0) conn_close(c);
  else conn_check_done(c);
}

static void conn_flush(fs_conn_t *c) {
  if (c->closing) return;
  uint8_t *buf = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    const uint8_t *p;
    ssize_t n = nghttp2_session_mem_send(c->session, &p);
    if (n < 0) {
      free(buf);
      conn_close(c);
      return;
    }
    if (n == 0) break;
    if (len + (size_t)n > cap) {
      size_t ncap = cap ? cap : 16384;
      while (ncap < len + (size_t)n) ncap *= 2;
      uint8_t *b = realloc(buf, ncap);
      if (!b) {
        free(buf);
        conn_close(c);
        return;
      }
      buf = b;
      cap = ncap;
    }
    memcpy(buf + len, p, (size_t)n);
    len += (size_t)n;
  }
  if (len) {
    fs_write_t *w = malloc(sizeof(*w));
    if (!w) {
      free(buf);
      conn_close(c);
      return;
    }
    w->data = buf;
    w->req.data = c;
    uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
      free(buf);
      free(w);
      conn_close(c);
      return;
    }
    c->writes++;
  }
  conn_check_done(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  fs_conn_t *c = h->data;
  buf->base = c->rbuf;
  buf->len = sizeof(c->rbuf);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  fs_conn_t *c = stream->data;
  if (c->closing) return;
  if (nread < 0) { /* EOF or error */
    conn_close(c);
    return;
  }
  if (nread == 0) return;
  ssize_t rv = nghttp2_session_mem_recv(c->session, (const uint8_t *)buf->base, (size_t)nread);
  if (rv < 0 || c->kill) {
    conn_close(c);
    return;
  }
  conn_flush(c);
}

static int conn_session_new(fs_conn_t *c) {
  nghttp2_session_callbacks *cbs;
  if (nghttp2_session_callbacks_new(&cbs)) return -1;
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  int rv = nghttp2_session_server_new(&c->session, cbs, c);
  nghttp2_session_callbacks_del(cbs);
  if (rv) {
    c->session = NULL;
    return -1;
  }
  nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 128}};
  return nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 1) ? -1 : 0;
}

static void on_connection(uv_stream_t *server, int status) {
  fake_server_t *fs = server->data;
  if (status < 0 || fs->closing) return;
  fs_conn_t *c = calloc(1, sizeof(*c));
  if (!c) return;
  c->fs = fs;
  if (uv_tcp_init(fs->loop, &c->tcp) != 0) {
    free(c);
    return;
  }
  c->tcp.data = c;
  c->next = fs->conns;
  if (fs->conns) fs->conns->prev = c;
  fs->conns = c;
  fs->st.open_connections++;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  fs->st.connections++;
  trace(fs, "conn %p accepted", (void *)c);
  uv_tcp_nodelay(&c->tcp, 1);
  if (conn_session_new(c) != 0 || uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
    conn_close(c);
    return;
  }
  conn_flush(c); /* our SETTINGS */
}

/* ---- the server ---- */

static void fs_maybe_free(fake_server_t *fs) {
  if (!fs->closing || !fs->listener_closed || fs->conns) return;
  while (fs->kvs) {
    fs_kv_t *kv = fs->kvs;
    fs->kvs = kv->next;
    free(kv->key);
    free(kv->value);
    free(kv);
  }
  void (*cb)(void *) = fs->close_cb;
  void *data = fs->close_data;
  free(fs);
  if (cb) cb(data);
}

static void on_listener_closed(uv_handle_t *h) {
  fake_server_t *fs = h->data;
  fs->listener_closed = 1;
  fs_maybe_free(fs);
}

static void on_failed_listener_closed(uv_handle_t *h) { free(h->data); }

int fake_server_start(uv_loop_t *loop, fake_server_t **out) {
  *out = NULL;
  fake_server_t *fs = calloc(1, sizeof(*fs));
  if (!fs) return UV_ENOMEM;
  fs->loop = loop;
  fs->mode = FS_NORMAL;
  fs->st.revision = 1;
  int rv = uv_tcp_init(loop, &fs->listener);
  if (rv) {
    free(fs);
    return rv;
  }
  fs->listener.data = fs;
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int blen = sizeof(bound);
  if ((rv = uv_ip4_addr("127.0.0.1", 0, &addr)) != 0 ||
      (rv = uv_tcp_bind(&fs->listener, (const struct sockaddr *)&addr, 0)) != 0 ||
      (rv = uv_listen((uv_stream_t *)&fs->listener, 128, on_connection)) != 0 ||
      (rv = uv_tcp_getsockname(&fs->listener, (struct sockaddr *)&bound, &blen)) != 0) {
    uv_close((uv_handle_t *)&fs->listener, on_failed_listener_closed);
    return rv;
  }
  fs->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
  const char *t = getenv("FAKE_SERVER_TRACE");
  fs->trace = t && *t && strcmp(t, "0") != 0;
  *out = fs;
  return 0;
}

int fake_server_port(const fake_server_t *fs) { return fs->port; }

void fake_server_endpoint(const fake_server_t *fs, char *buf, size_t len) {
  if (len) snprintf(buf, len, "127.0.0.1:%d", fs->port);
}

void fake_server_set_mode(fake_server_t *fs, fs_mode_t mode) { fs->mode = mode; }

void fake_server_push_mode(fake_server_t *fs, fs_mode_t mode) {
  if (fs->q_len == FS_MODE_QUEUE) {
    fprintf(stderr, "fake_server: mode queue full, %s dropped\n", fake_server_mode_name(mode));
    return;
  }
  fs->queue[(fs->q_head + fs->q_len) % FS_MODE_QUEUE] = mode;
  fs->q_len++;
}

size_t fake_server_pending_modes(const fake_server_t *fs) { return fs->q_len; }

const char *fake_server_mode_name(fs_mode_t mode) {
  return (unsigned)mode < FS_MODE_COUNT ? mode_names[mode] : "FS_UNKNOWN";
}

uint64_t fake_server_requests(const fake_server_t *fs) { return fs->st.requests; }
uint64_t fake_server_connections(const fake_server_t *fs) { return fs->st.connections; }
void fake_server_stats(const fake_server_t *fs, fs_stats_t *out) { *out = fs->st; }

int fake_server_get(const fake_server_t *fs, const void *key, size_t key_len,
                    const uint8_t **value, size_t *value_len, int64_t *version) {
  for (const fs_kv_t *kv = fs->kvs; kv; kv = kv->next) {
    if (key_cmp(kv->key, kv->key_len, key, key_len) != 0) continue;
    if (value) *value = kv->value;
    if (value_len) *value_len = kv->value_len;
    if (version) *version = kv->version;
    return 0;
  }
  return -1;
}

void fake_server_close(fake_server_t *fs, void (*cb)(void *data), void *data) {
  fs->closing = 1;
  fs->close_cb = cb;
  fs->close_data = data;
  uv_close((uv_handle_t *)&fs->listener, on_listener_closed);
  for (fs_conn_t *c = fs->conns; c; c = c->next) conn_close(c);
}
