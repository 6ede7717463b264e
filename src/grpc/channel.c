/* gRPC over HTTP/2 with nghttp2 (1.52 API) on a transport.
 *
 * Reading: transport bytes go to nghttp2_session_mem_recv; DATA chunks feed each call's
 * framer; whole messages go up at once. Completions found inside nghttp2 callbacks are
 * queued and fired after mem_recv returns (nghttp2 must not be re-entered).
 * Writing: every submit marks the channel dirty; one uv_idle tick per loop turn drains
 * nghttp2_session_mem_send into one buffer and issues one write; one write in flight. */
#include "channel.h"

#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/timerq.h"
#include "etcdreg/error.h"

enum { CH_CONNECTING, CH_READY, CH_DRAINING, CH_DEAD };

#define CH_WRITE_BATCH_MAX (4u * 1024 * 1024) /* bytes per uv_write before yielding */

struct etcdreg_grpc_call {
  etcdreg_grpc_channel_t *ch;
  int32_t stream_id;
  etcdreg_grpc_call_cbs_t cbs;
  void *data;
  etcdreg_grpc_outmsg_t *out_head, *out_tail;
  int end_requested, data_deferred;
  etcdreg_grpc_framer_t framer;
  int http_status;
  int grpc_status; /* -1 until received */
  char *grpc_message_raw;
  int non_grpc_content_type;
  int msg_rejected;
  int headers_sent;
  int done;        /* completion queued: no more network input is looked at */
  int final_code, final_local;
  char *final_message;
  etcdreg_timer_entry_t deadline;
  etcdreg_grpc_call_t *prev, *next; /* open calls */
  etcdreg_grpc_call_t *done_next;   /* completion queue */
};

struct etcdreg_grpc_channel {
  uv_loop_t *loop;
  etcdreg_transport_t *transport;
  nghttp2_session *session;
  char *authority, *scheme, *user_agent;
  size_t max_recv_msg;
  etcdreg_grpc_channel_cbs_t cbs;
  void *data;
  int state;
  etcdreg_grpc_call_t *calls;
  size_t n_calls;
  etcdreg_grpc_call_t *done_head, *done_tail;
  uv_idle_t tick;
  etcdreg_timerq_t timers;
  uint8_t *wbuf;
  size_t wlen, wcap;
  int writing;
  int in_recv;
  int unusable_pending, unusable_fired, unusable_err;
  char unusable_why[192];
  int closing, teardown, open_handles;
  int was_ready;
  uint64_t keepalive_interval, keepalive_timeout;
  uint64_t last_read_ms;
  etcdreg_timer_entry_t ping_timer;  /* next keepalive check */
  etcdreg_timer_entry_t ping_deadline; /* an unanswered ping */
};

static void ch_schedule(etcdreg_grpc_channel_t *ch);
static void ch_fail(etcdreg_grpc_channel_t *ch, int err, const char *why);

/* ---- outgoing messages ---- */

etcdreg_grpc_outmsg_t *etcdreg_grpc_outmsg_new(size_t payload_len) {
  etcdreg_grpc_outmsg_t *m = malloc(sizeof(*m) + ETCDREG_GRPC_PREFIX + payload_len);
  if (!m) return NULL;
  m->next = NULL;
  m->len = ETCDREG_GRPC_PREFIX + payload_len;
  m->off = 0;
  etcdreg_grpc_write_prefix(m->bytes, payload_len);
  return m;
}

void etcdreg_grpc_outmsg_free(etcdreg_grpc_outmsg_t *m) { free(m); }

/* ---- call completion ---- */

static int grpc_code_for_local(int err) {
  switch (err) {
  case ETCDREG_ETIMEDOUT: return ETCDREG_GRPC_DEADLINE_EXCEEDED;
  case ETCDREG_ECANCELED:
  case ETCDREG_ECLOSED: return ETCDREG_GRPC_CANCELLED;
  case ETCDREG_EUNAVAILABLE: return ETCDREG_GRPC_UNAVAILABLE;
  case ETCDREG_ETOOLARGE:
  case ETCDREG_ENOMEM: return ETCDREG_GRPC_RESOURCE_EXHAUSTED;
  case ETCDREG_EPROTO: return ETCDREG_GRPC_INTERNAL;
  default: return ETCDREG_GRPC_UNKNOWN;
  }
}

static void call_unlink(etcdreg_grpc_call_t *call) {
  etcdreg_grpc_channel_t *ch = call->ch;
  if (call->prev) call->prev->next = call->next;
  else ch->calls = call->next;
  if (call->next) call->next->prev = call->prev;
  call->prev = call->next = NULL;
  ch->n_calls--;
}

/* Queues the completion; from here on the stream's input is ignored. */
static void call_finish(etcdreg_grpc_call_t *call, int code, int local, const char *message) {
  if (call->done) return;
  etcdreg_grpc_channel_t *ch = call->ch;
  call->done = 1;
  call->final_code = code;
  call->final_local = local;
  call->final_message = strdup(message ? message : "");
  call_unlink(call);
  etcdreg_timerq_remove(&ch->timers, &call->deadline);
  if (call->stream_id > 0 && ch->session)
    nghttp2_session_set_stream_user_data(ch->session, call->stream_id, NULL);
  call->done_next = NULL;
  if (ch->done_tail) ch->done_tail->done_next = call;
  else ch->done_head = call;
  ch->done_tail = call;
  ch_schedule(ch);
}

static void call_free(etcdreg_grpc_call_t *call) {
  etcdreg_grpc_outmsg_t *m = call->out_head;
  while (m) {
    etcdreg_grpc_outmsg_t *next = m->next;
    free(m);
    m = next;
  }
  etcdreg_grpc_framer_reset(&call->framer);
  free(call->grpc_message_raw);
  free(call->final_message);
  free(call);
}

static void call_fire(etcdreg_grpc_call_t *call) {
  etcdreg_grpc_status_t st;
  st.code = call->final_code;
  st.local = call->final_local;
  st.message = call->final_message ? call->final_message : "";
  st.sent = call->headers_sent;
  st.never_connected = !call->ch->was_ready;
  if (call->cbs.on_close) call->cbs.on_close(call, &st, call->data);
  call_free(call);
}

static void call_fail_local(etcdreg_grpc_call_t *call, int err, const char *why) {
  call_finish(call, grpc_code_for_local(err), err, why);
}

/* ---- nghttp2 callbacks ---- */

static etcdreg_grpc_call_t *stream_call(nghttp2_session *s, int32_t id) {
  return id > 0 ? nghttp2_session_get_stream_user_data(s, id) : NULL;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data) {
  (void)flags;
  (void)user_data;
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  etcdreg_grpc_call_t *call = stream_call(s, frame->hd.stream_id);
  if (!call) return 0;
  if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
    int v = 0;
    for (size_t i = 0; i < valuelen && i < 4; i++)
      if (value[i] >= '0' && value[i] <= '9') v = v * 10 + (value[i] - '0');
    call->http_status = v;
  } else if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
    if (valuelen < 16 || memcmp(value, "application/grpc", 16) != 0) call->non_grpc_content_type = 1;
  } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
    int v = 0, ok = valuelen > 0 && valuelen < 4;
    for (size_t i = 0; ok && i < valuelen; i++) {
      if (value[i] < '0' || value[i] > '9') ok = 0;
      else v = v * 10 + (value[i] - '0');
    }
    call->grpc_status = ok ? v : ETCDREG_GRPC_UNKNOWN;
  } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
    free(call->grpc_message_raw);
    call->grpc_message_raw = etcdreg_grpc_percent_decode((const char *)value, valuelen);
  }
  return 0;
}

static int deliver_message(void *ctx, const uint8_t *msg, size_t len) {
  etcdreg_grpc_call_t *call = ctx;
  if (call->done || !call->cbs.on_message) return 0;
  int rv = call->cbs.on_message(call, msg, len, call->data);
  if (rv) call->msg_rejected = 1;
  return rv;
}

static void call_reset(etcdreg_grpc_call_t *call) {
  etcdreg_grpc_channel_t *ch = call->ch;
  if (call->stream_id > 0 && ch->session && ch->state != CH_DEAD)
    nghttp2_submit_rst_stream(ch->session, NGHTTP2_FLAG_NONE, call->stream_id, NGHTTP2_CANCEL);
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *user_data) {
  (void)flags;
  (void)user_data;
  etcdreg_grpc_call_t *call = stream_call(s, stream_id);
  if (!call || call->done) return 0;
  /* Not a gRPC response: the body is no gRPC framing; the status comes at stream end. */
  if (call->non_grpc_content_type || (call->http_status && call->http_status != 200)) return 0;
  call->msg_rejected = 0;
  int rv = etcdreg_grpc_framer_feed(&call->framer, data, len, deliver_message, call);
  if (rv == 0 || call->done) return 0;
  char why[160];
  if (rv == ETCDREG_ETOOLARGE)
    snprintf(why, sizeof(why), "response message of %zu bytes exceeds the receive limit of %zu bytes",
             etcdreg_grpc_framer_pending_len(&call->framer), call->framer.max_len);
  else if (rv == ETCDREG_EPROTO && call->msg_rejected)
    snprintf(why, sizeof(why), "response message could not be decoded (or more than one on a unary call)");
  else if (rv == ETCDREG_EPROTO)
    snprintf(why, sizeof(why), "malformed gRPC message framing (compressed flag or bad prefix)");
  else
    snprintf(why, sizeof(why), "response message rejected: %s", etcdreg_strerror(rv));
  call_reset(call);
  call_fail_local(call, rv, why);
  return 0;
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *frame, void *user_data) {
  (void)user_data;
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    etcdreg_grpc_call_t *call = stream_call(s, frame->hd.stream_id);
    if (call) call->headers_sent = 1;
  }
  return 0;
}

static void ch_keepalive_arm(etcdreg_grpc_channel_t *ch);

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *user_data) {
  (void)s;
  etcdreg_grpc_channel_t *ch = user_data;
  if (frame->hd.type == NGHTTP2_PING && (frame->hd.flags & NGHTTP2_FLAG_ACK)) {
    etcdreg_timerq_remove(&ch->timers, &ch->ping_deadline);
    ch_keepalive_arm(ch);
  }
  if (frame->hd.type == NGHTTP2_GOAWAY && ch->state != CH_DEAD) {
    ch->state = CH_DRAINING;
    if (!ch->unusable_pending && !ch->unusable_fired) {
      ch->unusable_pending = 1;
      ch->unusable_err = ETCDREG_EUNAVAILABLE;
      snprintf(ch->unusable_why, sizeof(ch->unusable_why),
               "server sent GOAWAY (error %u, last stream %d)", frame->goaway.error_code,
               frame->goaway.last_stream_id);
    }
    ch_schedule(ch);
  }
  return 0;
}

static void rst_to_status(uint32_t error_code, int *code, const char **what) {
  switch (error_code) {
  case NGHTTP2_REFUSED_STREAM: *code = ETCDREG_GRPC_UNAVAILABLE; *what = "refused"; break;
  case NGHTTP2_CANCEL: *code = ETCDREG_GRPC_CANCELLED; *what = "cancelled"; break;
  case NGHTTP2_ENHANCE_YOUR_CALM: *code = ETCDREG_GRPC_RESOURCE_EXHAUSTED; *what = "enhance your calm"; break;
  case NGHTTP2_INADEQUATE_SECURITY: *code = ETCDREG_GRPC_PERMISSION_DENIED; *what = "inadequate security"; break;
  default: *code = ETCDREG_GRPC_INTERNAL; *what = "reset"; break;
  }
}

static int on_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code,
                           void *user_data) {
  (void)user_data;
  etcdreg_grpc_call_t *call = stream_call(s, stream_id);
  if (!call || call->done) return 0;
  char why[200];
  if (etcdreg_grpc_framer_partial(&call->framer)) {
    call_finish(call, ETCDREG_GRPC_INTERNAL, ETCDREG_EPROTO, "stream ended in the middle of a message");
  } else if (call->grpc_status >= 0) {
    call_finish(call, call->grpc_status, 0, call->grpc_message_raw ? call->grpc_message_raw : "");
  } else if (error_code == NGHTTP2_REFUSED_STREAM) {
    call->headers_sent = 0; /* refused streams were provably not processed */
    call_finish(call, ETCDREG_GRPC_UNAVAILABLE, ETCDREG_EUNAVAILABLE,
                "stream refused by the server before processing");
  } else if (error_code != NGHTTP2_NO_ERROR) {
    int code;
    const char *what;
    rst_to_status(error_code, &code, &what);
    snprintf(why, sizeof(why), "stream %s by the server (HTTP/2 error %u)", what, error_code);
    call_finish(call, code, 0, why);
  } else if (call->http_status && call->http_status != 200) {
    snprintf(why, sizeof(why), "HTTP status %d without grpc-status", call->http_status);
    call_finish(call, etcdreg_grpc_status_from_http(call->http_status), 0, why);
  } else if (call->non_grpc_content_type) {
    call_finish(call, ETCDREG_GRPC_UNKNOWN, 0, "response is not gRPC (wrong content-type)");
  } else {
    call_finish(call, ETCDREG_GRPC_UNKNOWN, 0, "stream ended without grpc-status");
  }
  return 0;
}

static ssize_t data_source_read(nghttp2_session *s, int32_t stream_id, uint8_t *buf,
                                size_t length, uint32_t *data_flags,
                                nghttp2_data_source *source, void *user_data) {
  (void)source;
  (void)user_data;
  etcdreg_grpc_call_t *call = stream_call(s, stream_id);
  if (!call || call->done) {
    *data_flags |= NGHTTP2_DATA_FLAG_EOF; /* an RST follows */
    return 0;
  }
  size_t n = 0;
  while (n < length && call->out_head) {
    etcdreg_grpc_outmsg_t *m = call->out_head;
    size_t take = m->len - m->off;
    if (take > length - n) take = length - n;
    memcpy(buf + n, m->bytes + m->off, take);
    m->off += take;
    n += take;
    if (m->off == m->len) {
      call->out_head = m->next;
      if (!call->out_head) call->out_tail = NULL;
      free(m);
    }
  }
  if (!call->out_head) {
    if (call->end_requested) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    else if (n == 0) {
      call->data_deferred = 1;
      return NGHTTP2_ERR_DEFERRED;
    }
  }
  return (ssize_t)n;
}

/* ---- writing ---- */

static void ch_on_write(etcdreg_transport_t *t, int status, void *data) {
  (void)t;
  etcdreg_grpc_channel_t *ch = data;
  ch->writing = 0;
  ch->wlen = 0;
  if (status < 0) {
    ch_fail(ch, ETCDREG_EUNAVAILABLE, "write to the server failed");
    return;
  }
  if (ch->state != CH_DEAD && nghttp2_session_want_write(ch->session)) ch_schedule(ch);
}

static void ch_flush(etcdreg_grpc_channel_t *ch) {
  if (ch->writing || ch->state == CH_CONNECTING || ch->state == CH_DEAD) return;
  ch->wlen = 0;
  for (;;) {
    const uint8_t *p;
    ssize_t n = nghttp2_session_mem_send(ch->session, &p);
    if (n < 0) {
      char why[128];
      snprintf(why, sizeof(why), "HTTP/2 send failed: %s", nghttp2_strerror((int)n));
      ch_fail(ch, ETCDREG_EPROTO, why);
      return;
    }
    if (n == 0) break;
    if (ch->wlen + (size_t)n > ch->wcap) {
      size_t cap = ch->wcap ? ch->wcap : 16384;
      while (cap < ch->wlen + (size_t)n) cap *= 2;
      uint8_t *b = realloc(ch->wbuf, cap);
      if (!b) {
        ch_fail(ch, ETCDREG_ENOMEM, "out of memory buffering output");
        return;
      }
      ch->wbuf = b;
      ch->wcap = cap;
    }
    memcpy(ch->wbuf + ch->wlen, p, (size_t)n);
    ch->wlen += (size_t)n;
    if (ch->wlen >= CH_WRITE_BATCH_MAX) break;
  }
  if (ch->wlen == 0) return;
  uv_buf_t buf = uv_buf_init((char *)ch->wbuf, (unsigned)ch->wlen);
  int rv = etcdreg_transport_write(ch->transport, &buf, 1, ch_on_write, ch);
  if (rv < 0) {
    ch_fail(ch, ETCDREG_EUNAVAILABLE, "write to the server failed");
    return;
  }
  ch->writing = 1;
}

/* ---- keepalive ---- */

/* Pings only while calls are open (gRPC A8; etcd's enforcement counts pings without
 * streams as abuse), measured from the last byte read. */
static void ch_keepalive_arm(etcdreg_grpc_channel_t *ch) {
  if (!ch->keepalive_interval || ch->state != CH_READY || ch->closing) return;
  if (ch->n_calls == 0 || etcdreg_timer_entry_active(&ch->ping_deadline)) {
    etcdreg_timerq_remove(&ch->timers, &ch->ping_timer);
    return;
  }
  uint64_t due = ch->last_read_ms + ch->keepalive_interval;
  if (!etcdreg_timer_entry_active(&ch->ping_timer) || ch->ping_timer.due_ms != due)
    etcdreg_timerq_add(&ch->timers, &ch->ping_timer, due);
}

static void ch_on_ping_timer(etcdreg_timer_entry_t *e) {
  etcdreg_grpc_channel_t *ch = (etcdreg_grpc_channel_t *)((char *)e - offsetof(etcdreg_grpc_channel_t, ping_timer));
  if (ch->state != CH_READY || ch->n_calls == 0) return;
  uint64_t now = uv_now(ch->loop);
  if (now < ch->last_read_ms + ch->keepalive_interval) {
    ch_keepalive_arm(ch);
    return;
  }
  if (nghttp2_submit_ping(ch->session, NGHTTP2_FLAG_NONE, NULL) != 0) return;
  etcdreg_timerq_add(&ch->timers, &ch->ping_deadline, now + ch->keepalive_timeout);
  ch_schedule(ch);
}

static void ch_on_ping_deadline(etcdreg_timer_entry_t *e) {
  etcdreg_grpc_channel_t *ch = (etcdreg_grpc_channel_t *)((char *)e - offsetof(etcdreg_grpc_channel_t, ping_deadline));
  char why[128];
  snprintf(why, sizeof(why), "keepalive ping not answered within %llu ms",
           (unsigned long long)ch->keepalive_timeout);
  ch_fail(ch, ETCDREG_EUNAVAILABLE, why);
}

/* ---- lifecycle ---- */

static void ch_maybe_free(etcdreg_grpc_channel_t *ch) {
  if (!ch->teardown || ch->open_handles) return;
  etcdreg_grpc_channel_cbs_t cbs = ch->cbs;
  void *data = ch->data;
  nghttp2_session_del(ch->session);
  free(ch->wbuf);
  free(ch->authority);
  free(ch->scheme);
  free(ch->user_agent);
  free(ch);
  if (cbs.on_closed) cbs.on_closed(data);
}

static void ch_handle_closed(uv_handle_t *h) {
  etcdreg_grpc_channel_t *ch = h->data;
  ch->open_handles--;
  ch_maybe_free(ch);
}

static void ch_timers_closed(etcdreg_timerq_t *q) {
  etcdreg_grpc_channel_t *ch = (etcdreg_grpc_channel_t *)((char *)q - offsetof(etcdreg_grpc_channel_t, timers));
  ch->open_handles--;
  ch_maybe_free(ch);
}

static void ch_transport_closed(void *data) {
  etcdreg_grpc_channel_t *ch = data;
  ch->open_handles--;
  ch_maybe_free(ch);
}

static void ch_teardown(etcdreg_grpc_channel_t *ch) {
  if (ch->teardown) return;
  ch->teardown = 1;
  ch->open_handles = 3;
  uv_idle_stop(&ch->tick);
  uv_close((uv_handle_t *)&ch->tick, ch_handle_closed);
  etcdreg_timerq_close(&ch->timers, ch_timers_closed);
  etcdreg_transport_close(ch->transport);
}

static void ch_process(etcdreg_grpc_channel_t *ch) {
  if (ch->unusable_pending) {
    ch->unusable_pending = 0;
    ch->unusable_fired = 1;
    if (ch->cbs.on_unusable) ch->cbs.on_unusable(ch, ch->unusable_err, ch->unusable_why, ch->data);
  }
  while (ch->done_head) {
    etcdreg_grpc_call_t *call = ch->done_head;
    ch->done_head = call->done_next;
    if (!ch->done_head) ch->done_tail = NULL;
    call_fire(call);
  }
  ch_flush(ch);
  ch_keepalive_arm(ch);
  if (ch->state == CH_DRAINING && ch->n_calls == 0 && !ch->closing)
    etcdreg_grpc_channel_close(ch, ETCDREG_EUNAVAILABLE, "connection drained after GOAWAY");
  if (ch->closing && !ch->done_head && ch->n_calls == 0 && !ch->unusable_pending) {
    ch_teardown(ch);
    return;
  }
  if (!ch->done_head && !ch->unusable_pending) uv_idle_stop(&ch->tick);
}

static void ch_on_tick(uv_idle_t *h) { ch_process(h->data); }

static void ch_schedule(etcdreg_grpc_channel_t *ch) {
  if (ch->teardown) return;
  if (!uv_is_active((uv_handle_t *)&ch->tick)) uv_idle_start(&ch->tick, ch_on_tick);
}

/* Marks every open call failed and the channel dead. */
static void ch_fail(etcdreg_grpc_channel_t *ch, int err, const char *why) {
  if (ch->state == CH_DEAD) return;
  ch->state = CH_DEAD;
  if (!ch->unusable_fired && !ch->unusable_pending) {
    ch->unusable_pending = 1;
    ch->unusable_err = err;
    snprintf(ch->unusable_why, sizeof(ch->unusable_why), "%s", why);
  }
  while (ch->calls) call_fail_local(ch->calls, err, why);
  ch->closing = 1;
  ch_schedule(ch);
}

void etcdreg_grpc_channel_retire(etcdreg_grpc_channel_t *ch) {
  if (!ch || ch->closing || ch->state == CH_DEAD) return;
  ch->unusable_fired = 1;
  ch->unusable_pending = 0;
  ch->state = CH_DRAINING; /* ch_process closes it once the last call is done */
  ch_schedule(ch);
}

void etcdreg_grpc_channel_close(etcdreg_grpc_channel_t *ch, int err, const char *why) {
  if (!ch || ch->closing) return;
  ch->unusable_fired = 1; /* the owner asked: no unusable notification */
  ch->unusable_pending = 0;
  ch->state = CH_DEAD;
  while (ch->calls) call_fail_local(ch->calls, err, why);
  ch->closing = 1;
  ch_schedule(ch);
}

int etcdreg_grpc_channel_usable(const etcdreg_grpc_channel_t *ch) {
  return ch && !ch->closing && (ch->state == CH_CONNECTING || ch->state == CH_READY);
}

int etcdreg_grpc_channel_ready(const etcdreg_grpc_channel_t *ch) {
  return ch && ch->state == CH_READY;
}

static void ch_on_connect(etcdreg_transport_t *t, int status, const char *detail, void *data) {
  (void)t;
  etcdreg_grpc_channel_t *ch = data;
  if (ch->state != CH_CONNECTING) return;
  if (status < 0) {
    ch_fail(ch, status == ETCDREG_ECANCELED ? ETCDREG_EUNAVAILABLE : status, detail);
    return;
  }
  ch->state = CH_READY;
  ch->was_ready = 1;
  ch->last_read_ms = uv_now(ch->loop);
  if (ch->cbs.on_ready) ch->cbs.on_ready(ch, ch->data);
  ch_schedule(ch);
}

static void ch_on_read(etcdreg_transport_t *t, const uint8_t *buf, size_t len, void *data) {
  (void)t;
  etcdreg_grpc_channel_t *ch = data;
  if (ch->state == CH_DEAD) return;
  ch->last_read_ms = uv_now(ch->loop);
  ch->in_recv = 1;
  ssize_t rv = nghttp2_session_mem_recv(ch->session, buf, len);
  ch->in_recv = 0;
  if (rv < 0) {
    char why[128];
    snprintf(why, sizeof(why), "HTTP/2 protocol error: %s", nghttp2_strerror((int)rv));
    ch_fail(ch, ETCDREG_EPROTO, why);
  }
  /* Completions and replies (SETTINGS/PING acks, window updates) go out now. */
  ch_process(ch);
}

static void ch_on_end(etcdreg_transport_t *t, int status, const char *detail, void *data) {
  (void)t;
  ch_fail(data, status, detail);
}

int etcdreg_grpc_channel_new(uv_loop_t *loop, const etcdreg_transport_config_t *tcfg,
                             const etcdreg_grpc_channel_options_t *opts,
                             const etcdreg_grpc_channel_cbs_t *cbs, void *data,
                             etcdreg_grpc_channel_t **out) {
  if (!loop || !tcfg || !opts || !out) return ETCDREG_EINVAL;
  etcdreg_grpc_channel_t *ch = calloc(1, sizeof(*ch));
  if (!ch) return ETCDREG_ENOMEM;
  ch->loop = loop;
  ch->cbs = cbs ? *cbs : (etcdreg_grpc_channel_cbs_t){0};
  ch->data = data;
  ch->state = CH_CONNECTING;
  ch->max_recv_msg = opts->max_recv_msg ? opts->max_recv_msg : 64u * 1024 * 1024;
  ch->authority = strdup(opts->authority ? opts->authority : "localhost");
  ch->scheme = strdup(opts->scheme ? opts->scheme : "http");
  ch->user_agent = strdup(opts->user_agent ? opts->user_agent : "grpc-c-etcdreg");
  if (!ch->authority || !ch->scheme || !ch->user_agent) goto nomem;

  nghttp2_session_callbacks *ncb;
  if (nghttp2_session_callbacks_new(&ncb)) goto nomem;
  nghttp2_session_callbacks_set_on_header_callback(ncb, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(ncb, on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(ncb, on_frame_recv);
  nghttp2_session_callbacks_set_on_frame_send_callback(ncb, on_frame_send);
  nghttp2_session_callbacks_set_on_stream_close_callback(ncb, on_stream_close);
  nghttp2_option *nopt;
  if (nghttp2_option_new(&nopt)) {
    nghttp2_session_callbacks_del(ncb);
    goto nomem;
  }
  nghttp2_option_set_no_closed_streams(nopt, 1);
  int rv = nghttp2_session_client_new2(&ch->session, ncb, ch, nopt);
  nghttp2_session_callbacks_del(ncb);
  nghttp2_option_del(nopt);
  if (rv) goto nomem;

  uint32_t stream_window = opts->stream_window ? opts->stream_window : 4u * 1024 * 1024;
  uint32_t conn_window = opts->conn_window ? opts->conn_window : 16u * 1024 * 1024;
  if (stream_window > NGHTTP2_MAX_WINDOW_SIZE) stream_window = NGHTTP2_MAX_WINDOW_SIZE;
  if (conn_window > NGHTTP2_MAX_WINDOW_SIZE) conn_window = NGHTTP2_MAX_WINDOW_SIZE;
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, stream_window},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 64u * 1024},
  };
  if (nghttp2_submit_settings(ch->session, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) ||
      nghttp2_session_set_local_window_size(ch->session, NGHTTP2_FLAG_NONE, 0, (int32_t)conn_window)) {
    nghttp2_session_del(ch->session);
    goto nomem;
  }

  if (etcdreg_timerq_init(loop, &ch->timers)) {
    nghttp2_session_del(ch->session);
    goto nomem;
  }
  uv_idle_init(loop, &ch->tick);
  ch->tick.data = ch;
  ch->keepalive_interval = opts->keepalive_interval_ms;
  ch->keepalive_timeout = opts->keepalive_timeout_ms ? opts->keepalive_timeout_ms : 10000;
  etcdreg_timer_entry_init(&ch->ping_timer, ch_on_ping_timer);
  etcdreg_timer_entry_init(&ch->ping_deadline, ch_on_ping_deadline);

  etcdreg_transport_cbs_t tcbs = {ch_on_connect, ch_on_read, ch_on_end, ch_transport_closed};
  rv = tcfg->tls ? etcdreg_tls_transport_new(loop, tcfg, &tcbs, ch, &ch->transport)
                 : etcdreg_tcp_transport_new(loop, tcfg, &tcbs, ch, &ch->transport);
  if (rv) {
    /* Nothing connected: close the two handles and report the error from the loop. */
    ch->teardown = 1;
    ch->open_handles = 2;
    uv_close((uv_handle_t *)&ch->tick, ch_handle_closed);
    ch->cbs.on_closed = NULL;
    etcdreg_timerq_close(&ch->timers, ch_timers_closed);
    return rv;
  }
  *out = ch;
  return 0;

nomem:
  free(ch->authority);
  free(ch->scheme);
  free(ch->user_agent);
  free(ch);
  return ETCDREG_ENOMEM;
}

/* ---- calls ---- */

static void call_on_deadline(etcdreg_timer_entry_t *e) {
  etcdreg_grpc_call_t *call = (etcdreg_grpc_call_t *)((char *)e - offsetof(etcdreg_grpc_call_t, deadline));
  etcdreg_grpc_call_cancel(call, ETCDREG_ETIMEDOUT, "deadline exceeded");
}

int etcdreg_grpc_call_start(etcdreg_grpc_channel_t *ch, const char *path,
                            const etcdreg_grpc_metadata_t *md, size_t md_count,
                            uint64_t deadline_ms, const etcdreg_grpc_call_cbs_t *cbs,
                            void *data, etcdreg_grpc_call_t **out) {
  if (!ch || !path || !cbs || !out || md_count > 32) return ETCDREG_EINVAL;
  if (!etcdreg_grpc_channel_usable(ch)) return ETCDREG_EUNAVAILABLE;
  etcdreg_grpc_call_t *call = calloc(1, sizeof(*call));
  if (!call) return ETCDREG_ENOMEM;
  call->ch = ch;
  call->cbs = *cbs;
  call->data = data;
  call->grpc_status = -1;
  etcdreg_grpc_framer_init(&call->framer, ch->max_recv_msg);
  etcdreg_timer_entry_init(&call->deadline, call_on_deadline);

  char timeout[16];
  nghttp2_nv nva[8 + 32];
  size_t n = 0;
#define NV(NAME, VALUE)                                                                  \
  do {                                                                                   \
    nva[n].name = (uint8_t *)(NAME);                                                     \
    nva[n].namelen = strlen(NAME);                                                       \
    nva[n].value = (uint8_t *)(VALUE);                                                   \
    nva[n].valuelen = strlen(VALUE);                                                     \
    nva[n].flags = NGHTTP2_NV_FLAG_NONE;                                                 \
    n++;                                                                                 \
  } while (0)
  NV(":method", "POST");
  NV(":scheme", ch->scheme);
  NV(":path", path);
  NV(":authority", ch->authority);
  if (deadline_ms) {
    uint64_t now = uv_now(ch->loop);
    etcdreg_grpc_timeout_encode(deadline_ms > now ? deadline_ms - now : 1, timeout);
    NV("grpc-timeout", timeout);
  }
  NV("te", "trailers");
  NV("content-type", "application/grpc");
  NV("user-agent", ch->user_agent);
  for (size_t i = 0; i < md_count; i++) NV(md[i].name, md[i].value);
#undef NV

  nghttp2_data_provider prd;
  prd.source.ptr = NULL;
  prd.read_callback = data_source_read;
  int32_t id = nghttp2_submit_request(ch->session, NULL, nva, n, &prd, call);
  if (id < 0) {
    free(call);
    return id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE ? ETCDREG_EUNAVAILABLE : ETCDREG_ENOMEM;
  }
  call->stream_id = id;
  call->next = ch->calls;
  if (ch->calls) ch->calls->prev = call;
  ch->calls = call;
  ch->n_calls++;
  if (deadline_ms) etcdreg_timerq_add(&ch->timers, &call->deadline, deadline_ms);
  ch_schedule(ch);
  *out = call;
  return 0;
}

int etcdreg_grpc_call_send(etcdreg_grpc_call_t *call, etcdreg_grpc_outmsg_t *msg, int end) {
  if (call->done || call->end_requested) {
    free(msg);
    return ETCDREG_ECANCELED;
  }
  if (msg) {
    msg->next = NULL;
    if (call->out_tail) call->out_tail->next = msg;
    else call->out_head = msg;
    call->out_tail = msg;
  }
  if (end) call->end_requested = 1;
  etcdreg_grpc_channel_t *ch = call->ch;
  if (call->data_deferred) {
    call->data_deferred = 0;
    nghttp2_session_resume_data(ch->session, call->stream_id);
  }
  ch_schedule(ch);
  return 0;
}

void etcdreg_grpc_call_cancel(etcdreg_grpc_call_t *call, int err, const char *why) {
  if (!call || call->done) return;
  call_reset(call);
  call_fail_local(call, err, why ? why : etcdreg_strerror(err));
}

int etcdreg_grpc_call_sent(const etcdreg_grpc_call_t *call) { return call->headers_sent; }
