/*  sn_sslcompat: the one OpenSSL function civetweb needs that OpenSSL 3 lacks.

    Debian 12's civetweb (1.15) loads OpenSSL at run time with dlopen ("libssl.so")
    and looks up SSL_get_peer_certificate, which OpenSSL 3 turned into a macro for
    SSL_get1_peer_certificate; without it civetweb's TLS set-up fails and no HTTPS
    port it opens answers. This file is built as a library whose soname is
    libssl.so and which depends on the real libssl.so.3. The gateway loads it by
    path before civetweb sets up TLS (sn_gateway.c, s_load_openssl); civetweb's
    dlopen then finds it already loaded under the name it asks for, and looks every
    other function up through it, in libssl.so.3.
*/
#include <openssl/ssl.h>

#undef SSL_get_peer_certificate

X509 *SSL_get_peer_certificate (const SSL *ssl);

//  The function of OpenSSL 1.1 returned a new reference too: civetweb frees it.
X509 *
SSL_get_peer_certificate (const SSL *ssl)
{
    return SSL_get1_peer_certificate (ssl);
}
