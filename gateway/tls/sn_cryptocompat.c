/*  sn_cryptocompat: built as a library whose soname is libcrypto.so, depending on
    the real libcrypto.so.3 and adding nothing to it.

    civetweb dlopens "libcrypto.so" as well as "libssl.so". Found by the loader's
    own search, that name is the development symlink of whatever OpenSSL comes
    first there (or nothing without libssl-dev), and could be a second copy of
    libcrypto beside the one libssl.so.3 and libcurl use. Loaded by the gateway
    before civetweb sets up TLS, this library is already there under that name, so
    civetweb's dlopen returns it and resolves every function through it in the
    process's one libcrypto.so.3.
*/
#include <openssl/crypto.h>

int sn_cryptocompat_version (void);

//  Calls into libcrypto.so.3, so that the linker records it as this library's
//  dependency: that is where civetweb's lookups through this library go.
int
sn_cryptocompat_version (void)
{
    return OpenSSL_version_num () != 0;
}
