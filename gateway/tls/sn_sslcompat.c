/*  sn_sslcompat: the one OpenSSL function civetweb needs that OpenSSL 3 lacks.

    Debian 12's civetweb (1.15) loads OpenSSL at run time with dlopen ("libssl.so")
    and looks up SSL_get_peer_certificate, which OpenSSL 3 turned into a macro for
    SSL_get1_peer_certificate; without it civetweb's TLS set-up fails and no HTTPS
    port it opens answers. This file is built as a library whose soname is
    libssl.so, linked into supernode, and linked itself against the real
    libssl.so.3. civetweb's dlopen finds it already loaded under the name it asks
    for, and looks every other function up through it, in libssl.so.3.
*/
#include <openssl/ssl.h>

#undef SSL_get_peer_certificate

X509 *SSL_get_peer_certificate (const SSL *ssl);
int sn_sslcompat_linked (void);

//  The function of OpenSSL 1.1 returned a new reference too: civetweb frees it.
X509 *
SSL_get_peer_certificate (const SSL *ssl)
{
    return SSL_get1_peer_certificate (ssl);
}

//  The gateway calls this, so that the linker keeps this library, and its soname,
//  among supernode's.
int
sn_sslcompat_linked (void)
{
    return 1;
}
