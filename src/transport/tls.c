/* TLS transport: OpenSSL through memory BIOs over the stream transport (tcp.c). No
 * blocking socket calls and no OpenSSL threads: bytes read from the socket go into the
 * read BIO, ciphertext drained from the write BIO goes out as one write at a time.
 * TLS 1.2+, ALPN "h2" required, SNI for names, the certificate verified against a CA
 * file or the system store with the host name or IP checked; client certificate for
 * mutual TLS. Failures map to distinct codes (unknown CA, name mismatch, expired,
 * client certificate rejected, no h2). */
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcdreg/error.h"
#include "transport.h"

struct etcdreg_tls_ctx {
  SSL_CTX *ctx;
  int verify;
};

enum { TLS_CONNECTING, TLS_HANDSHAKE, TLS_OPEN, TLS_ENDED, TLS_CLOSING };

typedef struct {
  etcdreg_transport_t base;
  etcdreg_transport_t *inner;
  SSL *ssl;
  BIO *rbio, *wbio;
  int state;
  char *name;              /* verified name (host or tls_server_name) */
  uint8_t *out;            /* ciphertext waiting for the socket */
  size_t out_len, out_cap;
  uint8_t *inflight;       /* ciphertext being written */
  int app_pending;         /* `out` holds the application's last write */
  int inflight_has_app;
  etcdreg_transport_write_cb app_cb;
  void *app_cb_data;
  int inner_writing;
} tls_transport_t;

static const etcdreg_transport_vtable_t tls_vtable;

/* ---- the shared context ---- */

static void ssl_error_text(char *err, size_t errlen, const char *what) {
  unsigned long e = ERR_get_error();
  char buf[200];
  if (e) ERR_error_string_n(e, buf, sizeof(buf));
  else snprintf(buf, sizeof(buf), "unknown error");
  snprintf(err, errlen, "%s: %s", what, buf);
  ERR_clear_error();
}

int etcdreg_tls_ctx_new(const etcdreg_tls_options_t *o, etcdreg_tls_ctx_t **out, char *err, size_t errlen) {
  etcdreg_tls_ctx_t *t = calloc(1, sizeof(*t));
  if (!t) return ETCDREG_ENOMEM;
  t->ctx = SSL_CTX_new(TLS_client_method());
  if (!t->ctx) {
    free(t);
    ssl_error_text(err, errlen, "cannot create a TLS context");
    return ETCDREG_ETLS;
  }
  SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(t->ctx, SSL_MODE_RELEASE_BUFFERS);
  t->verify = !(o && o->insecure_skip_verify);
  SSL_CTX_set_verify(t->ctx, t->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
  int ok = 1;
  const char *what = "";
  if (o && o->ca_file) {
    ok = SSL_CTX_load_verify_locations(t->ctx, o->ca_file, NULL) == 1;
    what = "cannot load the CA file";
  } else {
    ok = SSL_CTX_set_default_verify_paths(t->ctx) == 1;
    what = "cannot load the system trust store";
  }
  if (ok && o && (o->cert_file || o->key_file)) {
    if (!o->cert_file || !o->key_file) {
      snprintf(err, errlen, "mutual TLS needs both a certificate and a key file");
      SSL_CTX_free(t->ctx);
      free(t);
      return ETCDREG_EINVAL;
    }
    ok = SSL_CTX_use_certificate_chain_file(t->ctx, o->cert_file) == 1;
    what = "cannot load the client certificate";
    if (ok) {
      ok = SSL_CTX_use_PrivateKey_file(t->ctx, o->key_file, SSL_FILETYPE_PEM) == 1;
      what = "cannot load the client key";
    }
    if (ok) {
      ok = SSL_CTX_check_private_key(t->ctx) == 1;
      what = "the client key does not match its certificate";
    }
  }
  if (!ok) {
    ssl_error_text(err, errlen, what);
    SSL_CTX_free(t->ctx);
    free(t);
    return ETCDREG_ETLS;
  }
  static const unsigned char alpn[] = {2, 'h', '2'};
  SSL_CTX_set_alpn_protos(t->ctx, alpn, sizeof(alpn));
  *out = t;
  return 0;
}

void etcdreg_tls_ctx_free(etcdreg_tls_ctx_t *t) {
  if (!t) return;
  SSL_CTX_free(t->ctx);
  free(t);
}

/* ---- errors ---- */

static int classify_failure(tls_transport_t *t, char *detail, size_t n) {
  long vr = SSL_get_verify_result(t->ssl);
  unsigned long e = ERR_peek_last_error();
  int reason = e ? ERR_GET_REASON(e) : 0;
  char ebuf[200] = "";
  if (e) ERR_error_string_n(e, ebuf, sizeof(ebuf));
  ERR_clear_error();
  if (vr != X509_V_OK && reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
    snprintf(detail, n, "TLS: server certificate for \"%s\" rejected: %s", t->name, X509_verify_cert_error_string(vr));
    switch (vr) {
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
    case X509_V_ERR_EMAIL_MISMATCH: return ETCDREG_ETLSNAME;
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID: return ETCDREG_ETLSEXPIRED;
    default: return ETCDREG_ETLSUNKNOWNCA;
    }
  }
  switch (reason) {
#ifdef SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED
  case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
#endif
  case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
  case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
  case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
  case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    snprintf(detail, n, "TLS: the server rejected the client certificate (%s)", ebuf);
    return ETCDREG_ETLSCERTREJECTED;
  default:
    snprintf(detail, n, "TLS failure with \"%s\": %s", t->name, ebuf[0] ? ebuf : "handshake failed");
    return ETCDREG_ETLS;
  }
}

/* ---- output ---- */

static void tls_flush(tls_transport_t *t);

static void inner_write_done(etcdreg_transport_t *inner, int status, void *data) {
  (void)inner;
  tls_transport_t *t = data;
  t->inner_writing = 0;
  free(t->inflight);
  t->inflight = NULL;
  int had_app = t->inflight_has_app;
  t->inflight_has_app = 0;
  if (had_app && t->app_cb) {
    etcdreg_transport_write_cb cb = t->app_cb;
    t->app_cb = NULL;
    cb(&t->base, status, t->app_cb_data);
  }
  if (status == 0) tls_flush(t);
}

/* Drains the write BIO and starts a socket write if none is in flight. */
static void tls_flush(tls_transport_t *t) {
  char buf[16384];
  int n;
  while ((n = BIO_read(t->wbio, buf, sizeof(buf))) > 0) {
    if (t->out_len + (size_t)n > t->out_cap) {
      size_t cap = t->out_cap ? t->out_cap : 32768;
      while (cap < t->out_len + (size_t)n) cap *= 2;
      uint8_t *o = realloc(t->out, cap);
      if (!o) return;
      t->out = o;
      t->out_cap = cap;
    }
    memcpy(t->out + t->out_len, buf, (size_t)n);
    t->out_len += (size_t)n;
  }
  if (t->inner_writing || t->out_len == 0 || t->state == TLS_CLOSING) return;
  t->inflight = t->out;
  uv_buf_t b = uv_buf_init((char *)t->out, (unsigned)t->out_len);
  t->inflight_has_app = t->app_pending;
  t->app_pending = 0;
  t->out = NULL;
  t->out_len = t->out_cap = 0;
  if (etcdreg_transport_write(t->inner, &b, 1, inner_write_done, t) == 0) {
    t->inner_writing = 1;
  } else {
    free(t->inflight);
    t->inflight = NULL;
  }
}

/* ---- input ---- */

static void tls_fail(tls_transport_t *t, int err, const char *detail) {
  int was = t->state;
  if (was != TLS_HANDSHAKE && was != TLS_OPEN && was != TLS_CONNECTING) return;
  t->state = TLS_ENDED;
  if (was == TLS_OPEN) {
    if (t->base.cbs.on_end) t->base.cbs.on_end(&t->base, err, detail, t->base.data);
  } else if (t->base.cbs.on_connect) {
    t->base.cbs.on_connect(&t->base, err, detail, t->base.data);
  }
}

static void tls_pump(tls_transport_t *t) {
  char detail[300];
  if (t->state == TLS_HANDSHAKE) {
    int rv = SSL_do_handshake(t->ssl);
    if (rv != 1) {
      int e = SSL_get_error(t->ssl, rv);
      tls_flush(t);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
      int err = classify_failure(t, detail, sizeof(detail));
      tls_fail(t, err, detail);
      return;
    }
    const unsigned char *proto = NULL;
    unsigned int plen = 0;
    SSL_get0_alpn_selected(t->ssl, &proto, &plen);
    if (plen != 2 || memcmp(proto, "h2", 2) != 0) {
      snprintf(detail, sizeof(detail), "TLS: %s did not negotiate HTTP/2 (ALPN h2)", t->name);
      tls_flush(t);
      tls_fail(t, ETCDREG_ETLSNOALPN, detail);
      return;
    }
    t->state = TLS_OPEN;
    tls_flush(t);
    if (t->base.cbs.on_connect) t->base.cbs.on_connect(&t->base, 0, "", t->base.data);
    if (t->state != TLS_OPEN) return;
  }
  char buf[16384];
  for (;;) {
    int n = SSL_read(t->ssl, buf, sizeof(buf));
    if (n > 0) {
      if (t->base.cbs.on_read) t->base.cbs.on_read(&t->base, (const uint8_t *)buf, (size_t)n, t->base.data);
      if (t->state != TLS_OPEN) return;
      continue;
    }
    int e = SSL_get_error(t->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
    if (e == SSL_ERROR_ZERO_RETURN) {
      tls_fail(t, ETCDREG_EUNAVAILABLE, "connection closed by the server (TLS close_notify)");
      return;
    }
    /* With TLS 1.3 a rejected client certificate arrives here, as an alert after the
     * handshake. */
    int err = classify_failure(t, detail, sizeof(detail));
    tls_fail(t, err, detail);
    return;
  }
  tls_flush(t); /* session tickets, key updates */
}

static void inner_on_connect(etcdreg_transport_t *inner, int status, const char *detail, void *data) {
  (void)inner;
  tls_transport_t *t = data;
  if (t->state != TLS_CONNECTING) return;
  if (status < 0) {
    tls_fail(t, status, detail);
    return;
  }
  t->state = TLS_HANDSHAKE;
  tls_pump(t);
}

static void inner_on_read(etcdreg_transport_t *inner, const uint8_t *buf, size_t len, void *data) {
  (void)inner;
  tls_transport_t *t = data;
  if (t->state != TLS_HANDSHAKE && t->state != TLS_OPEN) return;
  BIO_write(t->rbio, buf, (int)len);
  tls_pump(t);
}

static void inner_on_end(etcdreg_transport_t *inner, int status, const char *detail, void *data) {
  (void)inner;
  tls_transport_t *t = data;
  if (t->state == TLS_HANDSHAKE && status == ETCDREG_EUNAVAILABLE) {
    /* The server hung up during the handshake: it did not like what it saw. */
    char d[300];
    int err = classify_failure(t, d, sizeof(d));
    if (err != ETCDREG_ETLS) {
      tls_fail(t, err, d);
      return;
    }
    snprintf(d, sizeof(d), "TLS handshake with %s failed: %s", t->name, detail);
    tls_fail(t, ETCDREG_ETLS, d);
    return;
  }
  tls_fail(t, status, detail);
}

static void inner_on_closed(void *data) {
  tls_transport_t *t = data;
  etcdreg_transport_cbs_t cbs = t->base.cbs;
  void *udata = t->base.data;
  SSL_free(t->ssl); /* frees both BIOs */
  free(t->out);
  free(t->inflight);
  free(t->name);
  free(t);
  if (cbs.on_closed) cbs.on_closed(udata);
}

/* ---- the vtable ---- */

static int tls_write(etcdreg_transport_t *base, const uv_buf_t *bufs, unsigned nbufs,
                     etcdreg_transport_write_cb cb, void *cb_data) {
  tls_transport_t *t = (tls_transport_t *)base;
  if (t->state != TLS_OPEN) return ETCDREG_EUNAVAILABLE;
  if (t->app_cb) return ETCDREG_EBUSY;
  for (unsigned i = 0; i < nbufs; i++) {
    if (bufs[i].len == 0) continue;
    if (SSL_write(t->ssl, bufs[i].base, (int)bufs[i].len) <= 0) {
      ERR_clear_error();
      return ETCDREG_EUNAVAILABLE;
    }
  }
  t->app_cb = cb;
  t->app_cb_data = cb_data;
  t->app_pending = 1;
  tls_flush(t);
  return 0;
}

static void tls_close(etcdreg_transport_t *base) {
  tls_transport_t *t = (tls_transport_t *)base;
  if (t->state == TLS_CLOSING) return;
  t->state = TLS_CLOSING;
  etcdreg_transport_close(t->inner);
}

static const etcdreg_transport_vtable_t tls_vtable = {tls_write, tls_close};

int etcdreg_tls_transport_new(uv_loop_t *loop, const etcdreg_transport_config_t *cfg,
                              const etcdreg_transport_cbs_t *cbs, void *data, etcdreg_transport_t **out) {
  if (!cfg || !cfg->tls || !cbs || !out) return ETCDREG_EINVAL;
  tls_transport_t *t = calloc(1, sizeof(*t));
  if (!t) return ETCDREG_ENOMEM;
  t->base.vt = &tls_vtable;
  t->base.cbs = *cbs;
  t->base.data = data;
  const char *name = cfg->tls_server_name ? cfg->tls_server_name : cfg->host ? cfg->host : "localhost";
  t->name = strdup(name);
  t->ssl = SSL_new(cfg->tls->ctx);
  t->rbio = BIO_new(BIO_s_mem());
  t->wbio = BIO_new(BIO_s_mem());
  if (!t->name || !t->ssl || !t->rbio || !t->wbio) {
    if (t->ssl) SSL_free(t->ssl);
    else {
      BIO_free(t->rbio);
      BIO_free(t->wbio);
    }
    free(t->name);
    free(t);
    return ETCDREG_ENOMEM;
  }
  SSL_set_bio(t->ssl, t->rbio, t->wbio);
  SSL_set_connect_state(t->ssl);
  unsigned char ipbuf[16];
  int is_ip = inet_pton(AF_INET, name, ipbuf) == 1 || inet_pton(AF_INET6, name, ipbuf) == 1;
  if (cfg->tls->verify) {
    if (is_ip) X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), name);
    else SSL_set1_host(t->ssl, name);
  }
  if (!is_ip) SSL_set_tlsext_host_name(t->ssl, name);
  etcdreg_transport_cbs_t inner_cbs = {inner_on_connect, inner_on_read, inner_on_end, inner_on_closed};
  etcdreg_transport_config_t plain = *cfg;
  plain.tls = NULL;
  int rv = etcdreg_tcp_transport_new(loop, &plain, &inner_cbs, t, &t->inner);
  if (rv) {
    SSL_free(t->ssl);
    free(t->name);
    free(t);
    return rv;
  }
  t->state = TLS_CONNECTING;
  *out = &t->base;
  return 0;
}
