/*
 * LD_PRELOAD shim for wrk: every TLS connection starts with a full handshake.
 *
 * wrk keeps one SSL object per connection slot. To reconnect it calls
 * SSL_shutdown then SSL_clear (wrk src/ssl.c, ssl_close), and SSL_clear keeps
 * the session of a connection that was shut down cleanly (OpenSSL's
 * SSL_clear(3)). The next SSL_connect offers that session, so with
 * `Connection: close` wrk measures resumptions, not new visitors: against a
 * Node server with TLS 1.3 every second handshake resumed, with TLS 1.2
 * nearly all. wrk has no option to turn this off.
 *
 * Before a handshake starts, this drops the session the SSL object kept, so
 * the ClientHello offers no session ID, ticket or PSK. Nothing else about
 * wrk's TLS changes: same library, same cipher and group preferences.
 * bench/tls.ts checks, before measuring, that with this shim no handshake
 * resumes and that without it some do.
 *
 * No OpenSSL headers: the two library calls are declared here and resolved
 * in the libssl wrk already loaded.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;

int SSL_set_session(SSL *ssl, SSL_SESSION *session);
int SSL_in_before(const SSL *ssl);

static int (*next_ssl_connect)(SSL *);

__attribute__((constructor)) static void find_ssl_connect(void) {
    next_ssl_connect = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_connect");
    if (next_ssl_connect == NULL) {
        fprintf(stderr, "wrk-full-handshake: SSL_connect not found (is this program linked with libssl?)\n");
        exit(1);
    }
}

int SSL_connect(SSL *ssl) {
    /*
     * wrk calls SSL_connect again after each WANT_READ/WANT_WRITE: only the
     * first call of a handshake finds the object "before" it began, and only
     * then may the session be replaced.
     */
    if (SSL_in_before(ssl) && SSL_set_session(ssl, NULL) != 1) return -1;
    return next_ssl_connect(ssl);
}
