/*
 * fake_server.h - a fake etcd gRPC server (HTTP/2 cleartext, nghttp2) that misbehaves
 * on demand, for fault tests of the client.
 *
 * Test-only code.  Depends on libuv, nghttp2 and protobuf-c (the generated etcd
 * messages of the build).
 *
 * The server runs on the caller's uv_loop_t (the same loop as the client under test):
 * no threads, no blocking calls.  Every function must be called from the loop's thread.
 * It listens on 127.0.0.1:<ephemeral port>, speaks HTTP/2 with prior knowledge (the
 * client's preface first, no TLS, no h2c upgrade) and answers:
 *   /etcdserverpb.KV/Range  from an in-memory, sorted key-value store (single key,
 *                           [key, range_end), range_end "\0" = to the end; limit,
 *                           keys_only, count_only; the other options are ignored);
 *   /etcdserverpb.KV/Put    into that store (revision, create/mod revision, version,
 *                           lease, prev_kv, ignore_value, ignore_lease);
 *   anything else           trailers-only grpc-status 12 (UNIMPLEMENTED).
 * A request that is not exactly one uncompressed gRPC message holding a valid request
 * protobuf is answered with trailers-only grpc-status 13 (INTERNAL).
 *
 * Misbehaviour: every whole request (its END_STREAM received) takes a mode.  The mode
 * comes from the head of a FIFO of one-shot modes (fake_server_push_mode) or, when that
 * is empty, from the standing mode (fake_server_set_mode; FS_NORMAL at start).  The
 * mode acts on the request's stream and, for GOAWAY and close, on the connection that
 * carried it; connections accepted later are not affected.
 *
 * "Applied" below means a Put changes the store (and counts in puts_applied).
 *
 * With FAKE_SERVER_TRACE=1 in the environment the server logs connections, requests with
 * their mode, and the GOAWAY / RST_STREAM frames it sends or receives, on stderr.
 */
#ifndef ETCDREG_TEST_FAKE_SERVER_H
#define ETCDREG_TEST_FAKE_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  /* A well-formed answer: HEADERS(:status 200, content-type application/grpc), one
   * DATA message, trailers grpc-status 0.  Applied. */
  FS_NORMAL = 0,
  /* The normal answer with the message prefix's compressed flag set to 1 (no
   * grpc-encoding was negotiated), then trailers grpc-status 0.  Applied. */
  FS_MALFORMED_FRAME,
  /* DATA that does not start with a gRPC prefix at all (an HTTP/1.1 error page; the
   * flag byte is 'H'), then trailers grpc-status 0.  Applied. */
  FS_GARBAGE_PREFIX,
  /* A prefix declaring 0x7fffffff bytes followed by 4 bytes, then trailers grpc-status 0.
   * Applied. */
  FS_OVERSIZED_PREFIX,
  /* HEADERS(:status 200, content-type text/html) + an HTML body with END_STREAM, no
   * grpc-status.  Not applied. */
  FS_WRONG_CONTENT_TYPE,
  /* The same without a body: HEADERS with END_STREAM.  Not applied. */
  FS_WRONG_CONTENT_TYPE_EMPTY,
  /* One HEADERS with END_STREAM: :status 200, content-type application/grpc,
   * grpc-status 5, grpc-message "etcdserver: requested lease not found" percent-encoded
   * ("etcdserver%3A%20requested%20lease%20not%20found").  Not applied. */
  FS_TRAILERS_ONLY_ERROR,
  /* No answer: GOAWAY(NO_ERROR, last_stream_id = the highest stream this connection
   * took on before, 0 if none; with sequential calls that is this stream - 2), so the
   * request's stream is above last_stream_id (provably not processed).  Streams at or
   * below it are still answered; the connection closes once they are done.  Not
   * applied. */
  FS_GOAWAY_MIDSTREAM,
  /* grpc-go's graceful stop: GOAWAY(last_stream_id 2^31-1) + PING; on the PING's ACK
   * GOAWAY(last_stream_id = this stream), then the request is answered normally
   * (applied then) and the connection closes once its streams are done. */
  FS_GOAWAY_TWO_STEP,
  /* RST_STREAM(INTERNAL_ERROR) on the request's stream.  Not applied. */
  FS_RST_STREAM,
  /* RST_STREAM(REFUSED_STREAM) on the request's stream.  Not applied. */
  FS_RST_REFUSED,
  /* A correctly framed message whose payload (ff ff ff) is not a valid response
   * protobuf, then trailers grpc-status 0.  Applied. */
  FS_INVALID_PROTOBUF,
  /* HEADERS(:status 500, content-type text/plain) with END_STREAM, no grpc-status.
   * Not applied. */
  FS_HTTP_500,
  /* HEADERS(:status 500, content-type text/html) + an HTML body with END_STREAM, no
   * grpc-status (what an HTTP proxy in front of etcd sends).  Not applied. */
  FS_HTTP_500_BODY,
  /* A prefix declaring the normal message's length, only half of the message, then
   * trailers grpc-status 0.  Applied. */
  FS_TRUNCATED_MESSAGE,
  /* HEADERS(:status 200, application/grpc), no message, trailers grpc-status 0.
   * Applied. */
  FS_NO_MESSAGE,
  /* The normal message twice on a unary call, then trailers grpc-status 0.  Applied. */
  FS_TWO_MESSAGES,
  /* The connection is closed (TCP FIN, no GOAWAY) as soon as the request is in, without
   * an answer.  Not applied (the client cannot know that). */
  FS_CLOSE_AFTER_REQUEST,
  /* No answer at all, ever (until the client resets the stream).  Not applied. */
  FS_SILENT,
  FS_MODE_COUNT
} fs_mode_t;

typedef struct fake_server fake_server_t;

typedef struct fs_stats {
  uint64_t connections;      /* accepted */
  uint64_t open_connections; /* accepted and not yet closed */
  uint64_t requests;         /* whole requests received, any method and mode */
  uint64_t range_requests;   /* ... of which /etcdserverpb.KV/Range */
  uint64_t put_requests;     /* ... of which /etcdserverpb.KV/Put */
  uint64_t puts_applied;     /* Puts that changed the store */
  uint64_t goaways_sent;     /* GOAWAY frames, shutdown notices included */
  uint64_t rsts_sent;        /* RST_STREAM frames sent */
  uint64_t rsts_received;    /* RST_STREAM frames received from the client */
  int32_t last_stream_id;    /* stream of the last whole request */
  int64_t revision;          /* the store's current revision */
} fs_stats_t;

/* Listen on 127.0.0.1:<ephemeral port>.  Returns 0 and sets *out, or a negative libuv
 * error (*out is then NULL; run the loop before uv_loop_close()). */
int fake_server_start(uv_loop_t *loop, fake_server_t **out);

/* The listening port. */
int fake_server_port(const fake_server_t *fs);

/* "127.0.0.1:<port>" into buf (always NUL-terminated when len > 0). */
void fake_server_endpoint(const fake_server_t *fs, char *buf, size_t len);

/* The standing mode: every request from now on, on every connection, takes it (unless
 * a one-shot mode is queued). */
void fake_server_set_mode(fake_server_t *fs, fs_mode_t mode);

/* Queues a one-shot mode: the next request (after those already queued) takes it, then
 * the standing mode applies again.  At most 64 may be queued (more are dropped, with a
 * message on stderr). */
void fake_server_push_mode(fake_server_t *fs, fs_mode_t mode);

/* One-shot modes still queued. */
size_t fake_server_pending_modes(const fake_server_t *fs);

/* A static name for a mode ("FS_GOAWAY_MIDSTREAM"). */
const char *fake_server_mode_name(fs_mode_t mode);

/* Counters (see fs_stats_t). */
uint64_t fake_server_requests(const fake_server_t *fs);
uint64_t fake_server_connections(const fake_server_t *fs);
void fake_server_stats(const fake_server_t *fs, fs_stats_t *out);

/* A key's value in the store: 0 and a borrowed pointer (valid until the next Put) and
 * its version, or -1 when the key does not exist.  Any out pointer may be NULL. */
int fake_server_get(const fake_server_t *fs, const void *key, size_t key_len,
                    const uint8_t **value, size_t *value_len, int64_t *version);

/* Close the listener and every connection (at once, without GOAWAY) and free
 * everything.  cb (may be NULL) is called from the loop once every handle is closed
 * and the server is freed; fs must not be used after fake_server_close().  Calling it
 * twice is an error. */
void fake_server_close(fake_server_t *fs, void (*cb)(void *data), void *data);

#ifdef __cplusplus
}
#endif

#endif /* ETCDREG_TEST_FAKE_SERVER_H */
