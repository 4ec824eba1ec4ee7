/*  sn_zap: the ZAP handler of the process, answering CURVE handshakes by domain.

    libzmq asks one ZAP handler per context (inproc://zeromq.zap.01) whether a
    client may connect to a CURVE server socket, and names the socket's ZAP domain.
    CZMQ has one context per process and two nodes may share it (the selftests),
    so the handler is shared: the first sn_zap_new () binds it, the last
    sn_zap_destroy () stops it. Each sn_zap_t owns the domains it allows keys on;
    a node names its domains after its own address, so two nodes never share one.

    A request is allowed only when its mechanism is CURVE, its domain is one that
    some sn_zap_t registered, and the client's public key is in that domain's list:
    the keys of the certificates in a directory (the handler reads it again about
    once a second and swaps the new set in, so a key whose file is removed or
    replaced is refused from then on) and any single keys given. Anything else is refused with 400;
    malformed requests are dropped without an answer.
*/
#ifndef SN_ZAP_H_INCLUDED
#define SN_ZAP_H_INCLUDED

#include <czmq.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _sn_zap_t sn_zap_t;

//  Start answering ZAP requests, or join the handler already running. Returns NULL
//  with the reason in error when this libzmq has no CURVE or the handler cannot bind.
sn_zap_t *sn_zap_new (char *error, size_t size);

//  Forget the domains of this handle; the last handle stops the handler.
void sn_zap_destroy (sn_zap_t **self_p);

//  Allow, on domain, the public keys of the certificates right in dir (zcert public
//  files, at most 64 KiB; hidden files are skipped). The directory must be readable
//  and hold only regular files that are certificates: no subdirectory, symlink, FIFO
//  or _secret file. Returns 0, or -1 with the reason in error. Later rescans skip
//  such entries with a warning (at most one every 10 s) and allow the rest.
int sn_zap_allow_dir (sn_zap_t *self, const char *domain, const char *dir, char *error,
                      size_t size);

//  Allow one public key (Z85, 40 characters) on domain. Returns 0, or -1.
int sn_zap_allow_key (sn_zap_t *self, const char *domain, const char *public_key);

//  Make sock a CURVE server on domain with secret_key (Z85) that refuses every
//  client when no ZAP handler answers (ZMQ_ZAP_ENFORCE_DOMAIN): without it libzmq
//  lets anyone holding the server's public key in. Call before binding. Returns 0,
//  or -1 when this libzmq refuses one of the options.
int sn_zap_server (zsock_t *sock, const char *domain, const char *secret_key);

//  Handshakes refused so far, by every handle.
uint64_t sn_zap_refused (void);

//  Load a certificate written by zcert_save (path, and path_secret when secret is
//  true) into public_key and secret_key (41 bytes each: Z85 and a 0). Checks that
//  the keys are well formed and belong together. Returns 0, or -1 with the reason.
int sn_zap_cert_load (const char *path, bool secret, char *public_key, char *secret_key,
                      char *error, size_t size);

void sn_zap_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
