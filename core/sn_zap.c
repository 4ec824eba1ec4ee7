/*  sn_zap: the ZAP handler of the process, answering CURVE handshakes by domain.
 */
#include "sn_zap.h"
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>

//  Where libzmq sends ZAP requests (RFC 27), in every context.
#define S_ZAP_ENDPOINT "inproc://zeromq.zap.01"

//  libzmq 4.3 has it without the draft API, but its header declares it only with it.
#ifndef ZMQ_ZAP_ENFORCE_DOMAIN
#define ZMQ_ZAP_ENFORCE_DOMAIN 93
#endif

//  How often a refusal is logged at most: a client with the wrong key retries for ever.
#define S_LOG_EVERY 10000

//  How often, in ms, the handler reads the directories of allowed keys again.
#define S_RESCAN_EVERY 1000

//  Largest certificate file read: one is some 200 bytes, anything larger is not one.
#define S_CERT_MAX 65536

struct _sn_zap_t {
    zlistx_t *domains; //  s_domain_t this handle registered
};

//  The keys allowed on one domain by one call.
typedef struct {
    char *name;     //  the ZAP domain
    char *dir;      //  the directory the keys are read from, or NULL: given one by one
    zhashx_t *keys; //  the allowed public keys (Z85) as the table's keys
} s_domain_t;

//  Held while a handle is made or destroyed, so that the handler is bound and
//  unbound by one thread at a time.
static pthread_mutex_t s_life = PTHREAD_MUTEX_INITIALIZER;
//  Held while the domain table is read or changed; the handler takes it per request.
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static zactor_t *s_handler; //  the running handler, or NULL
static size_t s_users;      //  live handles
static zlistx_t *s_handles; //  sn_zap_t of every live handle
static uint64_t s_refused;  //  handshakes refused
static int64_t s_last_log;  //  zclock_mono of the last refusal logged
//  zclock_mono of the last bad directory entry logged; the handler's thread only
static int64_t s_last_bad_log;

static void
s_domain_destroy (void **item_p)
{
    s_domain_t *domain = (s_domain_t *) *item_p;
    if (domain) {
        free (domain->name);
        free (domain->dir);
        zhashx_destroy (&domain->keys);
        free (domain);
        *item_p = NULL;
    }
}

//  Whether key (Z85) is allowed on domain. Called with s_lock held.
static bool
s_allowed (const char *domain, const char *key)
{
    for (sn_zap_t *handle = (sn_zap_t *) zlistx_first (s_handles); handle;
         handle = (sn_zap_t *) zlistx_next (s_handles))
        for (s_domain_t *entry = (s_domain_t *) zlistx_first (handle->domains); entry;
             entry = (s_domain_t *) zlistx_next (handle->domains))
            if (streq (entry->name, domain) && zhashx_lookup (entry->keys, key))
                return true;
    return false;
}

//  A key read from a certificate: 40 characters of Z85 that decode.
static bool
s_key_valid (const char *text, byte *key)
{
    return text && strlen (text) == 40 && zmq_z85_decode (key, text);
}

//  The text of the regular file name (in the directory dirfd, or AT_FDCWD), at most
//  S_CERT_MAX bytes: never blocks on a FIFO or a device, follows no symlink when
//  flags has O_NOFOLLOW. Returns it (free it), or NULL with the reason in error.
static char *
s_read_file (int dirfd, const char *name, int flags, char *error, size_t size)
{
    int fd = openat (dirfd, name, O_RDONLY | O_NONBLOCK | O_CLOEXEC | flags);
    if (fd == -1) {
        snprintf (error, size, "%s: cannot open it: %s", name,
                  errno == ELOOP ? "a symlink (not followed)" : strerror (errno));
        return NULL;
    }
    struct stat st;
    char *text = NULL;
    if (fstat (fd, &st) || !S_ISREG (st.st_mode))
        snprintf (error, size, "%s: not a regular file", name);
    else if (st.st_size > S_CERT_MAX)
        snprintf (error, size, "%s: larger than %d bytes: not a certificate", name, S_CERT_MAX);
    else {
        text = (char *) zmalloc (S_CERT_MAX + 1);
        size_t length = 0;
        ssize_t got;
        while (length < S_CERT_MAX && ((got = read (fd, text + length, S_CERT_MAX - length)) > 0 ||
                                       (got == -1 && errno == EINTR)))
            if (got > 0)
                length += (size_t) got;
        text[length] = 0;
        if (got == -1) {
            snprintf (error, size, "%s: cannot read it: %s", name, strerror (errno));
            free (text);
            text = NULL;
        }
    }
    close (fd);
    return text;
}

//  The public key (Z85, 41 bytes) of a certificate's text. Returns 0, or -1.
static int
s_cert_public (const char *text, char *public_key)
{
    zconfig_t *root = zconfig_str_load (text);
    const char *public_text = root ? zconfig_get (root, "/curve/public-key", NULL) : NULL;
    byte bytes[32];
    int rc = s_key_valid (public_text, bytes) ? 0 : -1;
    if (rc == 0)
        snprintf (public_key, 41, "%s", public_text);
    zconfig_destroy (&root);
    return rc;
}

//  The public keys of the certificates right in dir: no subdirectory is read, no
//  symlink followed, hidden files are skipped. Returns the set (never NULL: empty
//  when dir cannot be read) and the number of entries that are not certificates,
//  _secret files and subdirectories included, the first one described in problem.
static zhashx_t *
s_load_dir (const char *dir, size_t *problems, char *problem, size_t size)
{
    zhashx_t *keys = zhashx_new ();
    *problems = 0;
    DIR *handle = opendir (dir);
    if (!handle) {
        snprintf (problem, size, "cannot read the directory %s: %s", dir, strerror (errno));
        *problems = 1;
        return keys;
    }
    char reason[PATH_MAX + 128] = "";
    struct dirent *entry;
    while ((entry = readdir (handle))) {
        const char *name = entry->d_name;
        if (name[0] == '.')
            continue;
        size_t length = strlen (name);
        struct stat st;
        char public_key[41];
        char *text = NULL;
        *reason = 0;
        if (fstatat (dirfd (handle), name, &st, AT_SYMLINK_NOFOLLOW))
            snprintf (reason, sizeof reason, "%s: %s", name, strerror (errno));
        else if (S_ISDIR (st.st_mode))
            snprintf (reason, sizeof reason, "%s is a directory: put the certificates right in %s",
                      name, dir);
        else if (!S_ISREG (st.st_mode))
            snprintf (reason, sizeof reason, "%s: not a regular file (symlinks are not followed)",
                      name);
        else if (length > 7 && streq (name + length - 7, "_secret"))
            snprintf (reason, sizeof reason,
                      "%s: a secret key does not belong here: only clients' public files", name);
        else if (!(text = s_read_file (dirfd (handle), name, O_NOFOLLOW, reason, sizeof reason)))
            ;
        else if (s_cert_public (text, public_key))
            snprintf (reason, sizeof reason, "%s: not a certificate (no valid curve public-key)",
                      name);
        else
            zhashx_insert (keys, public_key, (void *) "");
        if (text) {
            explicit_bzero (text, strlen (text));
            free (text);
        }
        if (*reason && (*problems)++ == 0)
            snprintf (problem, size, "%s/%s", dir, reason);
    }
    closedir (handle);
    return keys;
}

//  Read every directory of allowed keys again and swap the new sets in: a key whose
//  file was removed or replaced is refused from now on. The directories are read
//  outside s_lock so that handshakes never wait on them.
static void
s_rescan (void)
{
    zlistx_t *dirs = zlistx_new ();
    zlistx_set_destructor (dirs, (czmq_destructor *) zstr_free);
    zlistx_set_comparator (dirs, (czmq_comparator *) strcmp);
    pthread_mutex_lock (&s_lock);
    for (sn_zap_t *handle = (sn_zap_t *) zlistx_first (s_handles); handle;
         handle = (sn_zap_t *) zlistx_next (s_handles))
        for (s_domain_t *entry = (s_domain_t *) zlistx_first (handle->domains); entry;
             entry = (s_domain_t *) zlistx_next (handle->domains))
            if (entry->dir && !zlistx_find (dirs, entry->dir))
                zlistx_add_end (dirs, strdup (entry->dir));
    pthread_mutex_unlock (&s_lock);
    if (zlistx_size (dirs) == 0) {
        zlistx_destroy (&dirs);
        return;
    }
    zhashx_t *loaded = zhashx_new ();
    zhashx_set_destructor (loaded, (czmq_destructor *) zhashx_destroy);
    for (char *dir = (char *) zlistx_first (dirs); dir; dir = (char *) zlistx_next (dirs)) {
        size_t problems;
        char problem[PATH_MAX + 256];
        zhashx_insert (loaded, dir, s_load_dir (dir, &problems, problem, sizeof problem));
        int64_t now = zclock_mono ();
        if (problems && (s_last_bad_log == 0 || now - s_last_bad_log >= S_LOG_EVERY)) {
            s_last_bad_log = now;
            zsys_warning ("sn_zap: %zu entries skipped, keys allowed without them: %s", problems,
                          problem);
        }
    }
    pthread_mutex_lock (&s_lock);
    for (sn_zap_t *handle = (sn_zap_t *) zlistx_first (s_handles); handle;
         handle = (sn_zap_t *) zlistx_next (s_handles))
        for (s_domain_t *entry = (s_domain_t *) zlistx_first (handle->domains); entry;
             entry = (s_domain_t *) zlistx_next (handle->domains)) {
            zhashx_t *keys = entry->dir ? (zhashx_t *) zhashx_lookup (loaded, entry->dir) : NULL;
            if (keys) {
                zhashx_destroy (&entry->keys);
                entry->keys = zhashx_dup (keys);
            }
        }
    pthread_mutex_unlock (&s_lock);
    zhashx_destroy (&loaded);
    zlistx_destroy (&dirs);
}

//  A frame's text, at most size - 1 bytes of it.
static void
s_frame_text (zframe_t *frame, char *text, size_t size)
{
    size_t length = frame ? zframe_size (frame) : 0;
    if (length > size - 1)
        length = size - 1;
    if (length)
        memcpy (text, zframe_data (frame), length);
    text[length] = 0;
    for (size_t index = 0; index < length; index++)
        if (text[index] < 0x20 || text[index] > 0x7e)
            text[index] = '?';
}

//  Answer one request from the ROUTER, or drop it when it is not ZAP 1.0.
static void
s_handle (zsock_t *router)
{
    zmsg_t *request = zmsg_recv (router);
    if (!request)
        return;
    //  [routing id, empty, version, request id, domain, address, identity,
    //   mechanism, credentials...]
    zframe_t *route = zmsg_pop (request);
    zframe_t *empty = zmsg_pop (request);
    zframe_t *version = zmsg_pop (request);
    zframe_t *request_id = zmsg_pop (request);
    if (!route || !empty || zframe_size (empty) != 0 || !version || !request_id ||
        !zframe_streq (version, "1.0")) {
        zframe_destroy (&route);
        zframe_destroy (&empty);
        zframe_destroy (&version);
        zframe_destroy (&request_id);
        zmsg_destroy (&request);
        return;
    }
    char domain[256], address[64], mechanism[16], key[41] = "";
    zframe_t *frame = zmsg_first (request);
    s_frame_text (frame, domain, sizeof domain);
    s_frame_text (zmsg_next (request), address, sizeof address);
    zmsg_next (request); //  the routing id the client asked for, unused
    s_frame_text (zmsg_next (request), mechanism, sizeof mechanism);
    zframe_t *credentials = zmsg_next (request);
    bool allowed = false;
    if (zmsg_size (request) == 5 && streq (mechanism, "CURVE") && credentials &&
        zframe_size (credentials) == 32 && zmq_z85_encode (key, zframe_data (credentials), 32)) {
        pthread_mutex_lock (&s_lock);
        allowed = s_allowed (domain, key);
        pthread_mutex_unlock (&s_lock);
    }
    if (!allowed) {
        pthread_mutex_lock (&s_lock);
        s_refused++;
        int64_t now = zclock_mono ();
        bool log = s_last_log == 0 || now - s_last_log >= S_LOG_EVERY;
        if (log)
            s_last_log = now;
        pthread_mutex_unlock (&s_lock);
        if (log)
            zsys_warning ("sn_zap: refused %s%s%s from %s on %s", mechanism, *key ? " key " : "",
                          key, address, domain);
    }
    zmsg_t *reply = zmsg_new ();
    zmsg_append (reply, &route);
    zmsg_append (reply, &empty);
    zmsg_append (reply, &version);
    zmsg_append (reply, &request_id);
    zmsg_addstr (reply, allowed ? "200" : "400");
    zmsg_addstr (reply, allowed ? "OK" : "key not allowed");
    zmsg_addstr (reply, allowed ? key : "");
    zmsg_addmem (reply, NULL, 0); //  no metadata
    zmsg_send (&reply, router);
    zmsg_destroy (&request);
}

static void
s_handler_actor (zsock_t *pipe, void *args)
{
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    zsock_set_linger (router, 0);
    //  zactor_new takes the signal; whether the bind worked comes after it
    zsock_signal (pipe, 0);
    if (zsock_bind (router, S_ZAP_ENDPOINT) == -1) {
        zsock_destroy (&router);
        zstr_send (pipe, "cannot bind");
        return;
    }
    zstr_send (pipe, "OK");
    zpoller_t *poller = zpoller_new (pipe, router, NULL);
    //  A signal to the process (EINTR, zsys_interrupted) must not stop the handler:
    //  only $TERM or the context ending do
    zpoller_set_nonstop (poller, true);
    int64_t next_scan = zclock_mono () + S_RESCAN_EVERY;
    while (true) {
        int64_t now = zclock_mono ();
        if (now >= next_scan) {
            s_rescan ();
            next_scan = now + S_RESCAN_EVERY;
        }
        zsock_t *which = (zsock_t *) zpoller_wait (poller, (int) (next_scan - now));
        if (which == router)
            s_handle (router);
        else if (which == pipe) {
            char *command = zstr_recv (pipe);
            bool term = command ? streq (command, "$TERM") : zmq_errno () == ETERM;
            free (command);
            if (term)
                break;
        }
        else if (!zpoller_expired (poller) && zmq_errno () == ETERM)
            break;
    }
    zpoller_destroy (&poller);
    zsock_destroy (&router);
}

sn_zap_t *
sn_zap_new (char *error, size_t size)
{
    if (!zsys_has_curve ()) {
        snprintf (error, size,
                  "this libzmq was built without CURVE (libsodium): no --curve options");
        return NULL;
    }
    pthread_mutex_lock (&s_life);
    if (!s_handler) {
        zactor_t *handler = zactor_new (s_handler_actor, NULL);
        char *status = handler ? zstr_recv (handler) : NULL;
        bool bound = status && streq (status, "OK");
        free (status);
        if (!bound) {
            zactor_destroy (&handler);
            pthread_mutex_unlock (&s_life);
            snprintf (error, size, "cannot bind the ZAP handler at %s", S_ZAP_ENDPOINT);
            return NULL;
        }
        s_handler = handler;
    }
    sn_zap_t *self = (sn_zap_t *) zmalloc (sizeof (sn_zap_t));
    self->domains = zlistx_new ();
    zlistx_set_destructor (self->domains, s_domain_destroy);
    pthread_mutex_lock (&s_lock);
    if (!s_handles)
        s_handles = zlistx_new ();
    zlistx_add_end (s_handles, self);
    s_users++;
    pthread_mutex_unlock (&s_lock);
    pthread_mutex_unlock (&s_life);
    return self;
}

void
sn_zap_destroy (sn_zap_t **self_p)
{
    assert (self_p);
    if (!*self_p)
        return;
    sn_zap_t *self = *self_p;
    pthread_mutex_lock (&s_life);
    pthread_mutex_lock (&s_lock);
    void *handle = zlistx_find (s_handles, self);
    assert (handle);
    zlistx_delete (s_handles, handle);
    zlistx_destroy (&self->domains);
    bool last = --s_users == 0;
    if (last)
        zlistx_destroy (&s_handles);
    pthread_mutex_unlock (&s_lock);
    //  Outside s_lock: the handler may be waiting for it
    if (last)
        zactor_destroy (&s_handler);
    pthread_mutex_unlock (&s_life);
    free (self);
    *self_p = NULL;
}

//  Add an entry to the table under s_lock; it takes keys and dir.
static void
s_add (sn_zap_t *self, const char *name, char *dir, zhashx_t *keys)
{
    s_domain_t *domain = (s_domain_t *) zmalloc (sizeof (s_domain_t));
    domain->name = strdup (name);
    domain->dir = dir;
    domain->keys = keys;
    pthread_mutex_lock (&s_lock);
    zlistx_add_end (self->domains, domain);
    pthread_mutex_unlock (&s_lock);
}

int
sn_zap_allow_dir (sn_zap_t *self, const char *domain, const char *dir, char *error, size_t size)
{
    assert (self && domain && dir);
    size_t problems;
    zhashx_t *keys = s_load_dir (dir, &problems, error, size);
    if (problems) {
        zhashx_destroy (&keys);
        return -1;
    }
    s_add (self, domain, strdup (dir), keys);
    return 0;
}

int
sn_zap_allow_key (sn_zap_t *self, const char *domain, const char *public_key)
{
    assert (self && domain && public_key);
    byte key[32];
    if (!s_key_valid (public_key, key))
        return -1;
    zhashx_t *keys = zhashx_new ();
    zhashx_insert (keys, public_key, (void *) "");
    s_add (self, domain, NULL, keys);
    return 0;
}

int
sn_zap_server (zsock_t *sock, const char *domain, const char *secret_key)
{
    assert (sock && domain && secret_key);
    int one = 1;
    zsock_set_zap_domain (sock, domain);
    if (zmq_setsockopt (zsock_resolve (sock), ZMQ_ZAP_ENFORCE_DOMAIN, &one, sizeof one))
        return -1;
    zsock_set_curve_server (sock, 1);
    zsock_set_curve_secretkey (sock, secret_key);
    return zsock_curve_server (sock) == 1 ? 0 : -1;
}

uint64_t
sn_zap_refused (void)
{
    pthread_mutex_lock (&s_lock);
    uint64_t refused = s_refused;
    pthread_mutex_unlock (&s_lock);
    return refused;
}

int
sn_zap_cert_load (const char *path, bool secret, char *public_key, char *secret_key, char *error,
                  size_t size)
{
    assert (path && public_key && secret_key);
    char file[PATH_MAX];
    snprintf (file, sizeof file, secret ? "%s_secret" : "%s", path);
    if (!zsys_file_exists (file)) {
        if (secret)
            snprintf (error, size,
                      "%s: no such file (a certificate is FILE and FILE_secret, as supernode "
                      "keygen FILE writes them)",
                      file);
        else
            snprintf (error, size, "%s: no such file", file);
        return -1;
    }
    //  Not zconfig_load: it would block on a FIFO and read a file of any size
    char *text = s_read_file (AT_FDCWD, file, 0, error, size);
    if (!text)
        return -1;
    zconfig_t *root = zconfig_str_load (text);
    explicit_bzero (text, strlen (text));
    free (text);
    byte public_bytes[32], secret_bytes[32], derived[41];
    const char *public_text = root ? zconfig_get (root, "/curve/public-key", NULL) : NULL;
    const char *secret_text = root ? zconfig_get (root, "/curve/secret-key", NULL) : NULL;
    int rc = -1;
    if (!root)
        snprintf (error, size, "%s: cannot read it as a certificate", file);
    else if (!s_key_valid (public_text, public_bytes))
        snprintf (error, size, "%s: not a certificate (no valid curve public-key)", file);
    else if (secret && !s_key_valid (secret_text, secret_bytes))
        snprintf (error, size, "%s: not a secret certificate (no valid curve secret-key)", file);
    else if (secret && (zmq_curve_public ((char *) derived, secret_text) != 0 ||
                        !streq ((char *) derived, public_text)))
        snprintf (error, size, "%s: its public and secret keys do not belong together", file);
    else {
        snprintf (public_key, 41, "%s", public_text);
        snprintf (secret_key, 41, "%s", secret ? secret_text : "");
        rc = 0;
    }
    if (secret_text)
        explicit_bzero ((char *) secret_text, strlen (secret_text));
    explicit_bzero (secret_bytes, sizeof secret_bytes);
    zconfig_destroy (&root);
    return rc;
}

//  --------------------------------------------------------------------------
//  Selftest

//  Whether a CURVE client with cert reaches a server on endpoint: a request gets
//  an answer from the server's echo within ms.
static bool
s_test_reaches (zsock_t *server, const char *endpoint, const char *server_key, zcert_t *cert,
                int ms)
{
    zsock_t *client = zsock_new (ZMQ_DEALER);
    zsock_set_linger (client, 0);
    if (cert) {
        zcert_apply (cert, client);
        zsock_set_curve_serverkey (client, server_key);
    }
    assert (zsock_connect (client, "%s", endpoint) == 0);
    zstr_send (client, "hello");
    bool reached = false;
    zpoller_t *poller = zpoller_new (server, NULL);
    zpoller_set_nonstop (poller, true);
    if (zpoller_wait (poller, ms) == server) {
        zmsg_t *msg = zmsg_recv (server);
        zmsg_send (&msg, server);
        zpoller_destroy (&poller);
        poller = zpoller_new (client, NULL);
        zpoller_set_nonstop (poller, true);
        if (zpoller_wait (poller, 5000) == client) {
            char *echo = zstr_recv (client);
            reached = echo && streq (echo, "hello");
            free (echo);
        }
    }
    zpoller_destroy (&poller);
    zsock_destroy (&client);
    return reached;
}

//  Whether the client reaches the server within 10 s: the directory is read again
//  about once a second.
static bool
s_test_reaches_soon (zsock_t *server, const char *endpoint, const char *server_key, zcert_t *cert)
{
    int64_t deadline = zclock_mono () + 10000;
    while (zclock_mono () < deadline)
        if (s_test_reaches (server, endpoint, server_key, cert, 200))
            return true;
    return false;
}

//  A CURVE server ROUTER on a free port of loopback, in domain, with cert.
static zsock_t *
s_test_server (zcert_t *cert, const char *domain, char *endpoint)
{
    zsock_t *server = zsock_new (ZMQ_ROUTER);
    zsock_set_linger (server, 0);
    assert (sn_zap_server (server, domain, zcert_secret_txt (cert)) == 0);
    int port = zsock_bind (server, "tcp://127.0.0.1:*");
    assert (port > 0);
    sprintf (endpoint, "tcp://127.0.0.1:%d", port);
    return server;
}

void
sn_zap_test (bool verbose)
{
    if (!zsys_has_curve ()) {
        zsys_info ("sn_zap: this libzmq has no CURVE: nothing to test");
        return;
    }
    char error[512];
    char dir[] = "/tmp/sn_zap_test_XXXXXX";
    assert (mkdtemp (dir));
    char path[PATH_MAX];

    //  Certificates: the server's, an allowed client's (in dir), a stranger's
    zcert_t *server_cert = zcert_new ();
    zcert_t *allowed = zcert_new ();
    zcert_t *stranger = zcert_new ();
    snprintf (path, sizeof path, "%s/allowed", dir);
    assert (zcert_save (allowed, path) == 0); //  and allowed_secret
    char public_key[41], secret_key[41];
    assert (sn_zap_cert_load (path, true, public_key, secret_key, error, sizeof error) == 0);
    assert (streq (public_key, zcert_public_txt (allowed)));
    assert (streq (secret_key, zcert_secret_txt (allowed)));
    assert (sn_zap_cert_load (path, false, public_key, secret_key, error, sizeof error) == 0);
    assert (streq (public_key, zcert_public_txt (allowed)) && *secret_key == 0);

    //  Bad certificates are named: missing, missing secret, garbage, mismatched keys
    char bad[PATH_MAX];
    snprintf (bad, sizeof bad, "%s/none", dir);
    assert (sn_zap_cert_load (bad, false, public_key, secret_key, error, sizeof error) == -1);
    assert (strstr (error, "no such file"));
    char bad_dir[] = "/tmp/sn_zap_test_XXXXXX";
    assert (mkdtemp (bad_dir));
    snprintf (bad, sizeof bad, "%s/public", bad_dir);
    assert (zcert_save_public (stranger, bad) == 0);
    assert (sn_zap_cert_load (bad, true, public_key, secret_key, error, sizeof error) == -1);
    assert (strstr (error, "_secret: no such file"));
    snprintf (bad, sizeof bad, "%s/garbage", bad_dir);
    FILE *file = fopen (bad, "w");
    assert (file);
    fputs ("curve\n    public-key = \"short\"\n", file);
    fclose (file);
    assert (sn_zap_cert_load (bad, false, public_key, secret_key, error, sizeof error) == -1);
    assert (strstr (error, "not a certificate"));
    snprintf (bad, sizeof bad, "%s/mixed_secret", bad_dir);
    file = fopen (bad, "w");
    assert (file);
    fprintf (file, "curve\n    public-key = \"%s\"\n    secret-key = \"%s\"\n",
             zcert_public_txt (stranger), zcert_secret_txt (allowed));
    fclose (file);
    snprintf (bad, sizeof bad, "%s/mixed", bad_dir);
    assert (sn_zap_cert_load (bad, true, public_key, secret_key, error, sizeof error) == -1);
    assert (strstr (error, "do not belong together"));

    //  With no handler bound, a CURVE server refuses even a client it would allow
    char endpoint[64], peers_endpoint[64];
    const char *server_key = zcert_public_txt (server_cert);
    zsock_t *server = s_test_server (server_cert, "test-clients", endpoint);
    assert (!s_test_reaches (server, endpoint, server_key, allowed, 500));
    zsock_destroy (&server);

    sn_zap_t *zap = sn_zap_new (error, sizeof error);
    assert (zap);
    //  A directory holding anything but certificates, or none at all, is refused
    assert (sn_zap_allow_dir (zap, "test-clients", bad_dir, error, sizeof error) == -1);
    assert (strstr (error, "not a certificate") || strstr (error, "secret key"));
    assert (sn_zap_allow_dir (zap, "test-clients", "/nonexistent/sn", error, sizeof error) == -1);
    assert (strstr (error, "cannot read the directory"));
    //  ... and so is one holding a secret key, a FIFO (never opened), or a symlink
    assert (sn_zap_allow_dir (zap, "test-clients", dir, error, sizeof error) == -1);
    assert (strstr (error, "allowed_secret: a secret key does not belong here"));
    snprintf (path, sizeof path, "%s/allowed_secret", dir);
    assert (unlink (path) == 0);
    char odd_dir[] = "/tmp/sn_zap_test_XXXXXX";
    assert (mkdtemp (odd_dir));
    snprintf (path, sizeof path, "%s/fifo", odd_dir);
    assert (mkfifo (path, 0600) == 0);
    assert (sn_zap_allow_dir (zap, "test-clients", odd_dir, error, sizeof error) == -1);
    assert (strstr (error, "fifo: not a regular file"));
    assert (unlink (path) == 0);
    snprintf (path, sizeof path, "%s/link", odd_dir);
    snprintf (bad, sizeof bad, "%s/allowed", dir);
    assert (symlink (bad, path) == 0);
    assert (sn_zap_allow_dir (zap, "test-clients", odd_dir, error, sizeof error) == -1);
    assert (strstr (error, "link: not a regular file"));
    assert (unlink (path) == 0);
    snprintf (path, sizeof path, "%s/huge", odd_dir);
    file = fopen (path, "w");
    assert (file);
    for (int line = 0; line < 2000; line++)
        fprintf (file, "#   a comment line that makes the file larger than any certificate\n");
    fclose (file);
    assert (sn_zap_allow_dir (zap, "test-clients", odd_dir, error, sizeof error) == -1);
    assert (strstr (error, "huge: larger than 65536 bytes"));
    assert (sn_zap_allow_dir (zap, "test-clients", dir, error, sizeof error) == 0);
    assert (sn_zap_allow_key (zap, "test-peers", "short") == -1);
    assert (sn_zap_allow_key (zap, "test-peers", zcert_public_txt (stranger)) == 0);

    server = s_test_server (server_cert, "test-clients", endpoint);
    zsock_t *peers = s_test_server (server_cert, "test-peers", peers_endpoint);
    //  The allowed key gets in on its domain only; a stranger, a client without
    //  CURVE and one with the wrong server key do not
    uint64_t refused = sn_zap_refused ();
    assert (s_test_reaches (server, endpoint, server_key, allowed, 5000));
    assert (!s_test_reaches (server, endpoint, server_key, stranger, 200));
    assert (!s_test_reaches (server, endpoint, server_key, NULL, 200));
    assert (!s_test_reaches (server, endpoint, zcert_public_txt (stranger), allowed, 200));
    assert (s_test_reaches (peers, peers_endpoint, server_key, stranger, 5000));
    assert (!s_test_reaches (peers, peers_endpoint, server_key, allowed, 200));
    assert (sn_zap_refused () >= refused + 2);

    //  A second handle (another node in the process) shares the handler; its
    //  domains go with it
    sn_zap_t *second = sn_zap_new (error, sizeof error);
    assert (second);
    assert (sn_zap_allow_key (second, "test-second", zcert_public_txt (allowed)) == 0);
    zsock_t *other = s_test_server (server_cert, "test-second", peers_endpoint);
    assert (s_test_reaches (other, peers_endpoint, server_key, allowed, 5000));
    sn_zap_destroy (&second);
    sn_zap_destroy (&second);
    assert (!s_test_reaches (other, peers_endpoint, server_key, allowed, 200));
    zsock_destroy (&other);
    //  ... while the first handle's domains still answer
    assert (s_test_reaches (server, endpoint, server_key, allowed, 5000));

    //  A certificate added to the directory is allowed after the next rescan
    snprintf (path, sizeof path, "%s/late", dir);
    assert (zcert_save_public (stranger, path) == 0);
    assert (s_test_reaches_soon (server, endpoint, server_key, stranger));

    //  Rotation: another key renamed over late, with an older mtime and the same
    //  size, replaces it; the old key is refused from the same rescan on
    zcert_t *third = zcert_new ();
    snprintf (bad, sizeof bad, "%s/.late", dir); //  hidden: never read
    assert (zcert_save_public (third, bad) == 0);
    struct timeval old_times[2] = {{1000000000, 0}, {1000000000, 0}};
    assert (utimes (bad, old_times) == 0);
    assert (rename (bad, path) == 0);
    assert (s_test_reaches_soon (server, endpoint, server_key, third));
    assert (!s_test_reaches (server, endpoint, server_key, stranger, 200));

    //  A removed file takes its key with it; a FIFO, a symlink to a certificate and
    //  a subdirectory holding one are skipped and do not stop the rescan
    assert (unlink (path) == 0);
    snprintf (path, sizeof path, "%s/fifo", dir);
    assert (mkfifo (path, 0600) == 0);
    snprintf (path, sizeof path, "%s/link", dir);
    snprintf (bad, sizeof bad, "%s/public", bad_dir); //  the stranger's
    assert (symlink (bad, path) == 0);
    snprintf (path, sizeof path, "%s/sub", dir);
    assert (mkdir (path, 0700) == 0);
    snprintf (path, sizeof path, "%s/sub/stranger", dir);
    assert (zcert_save_public (stranger, path) == 0);
    zcert_t *fourth = zcert_new ();
    snprintf (path, sizeof path, "%s/fourth", dir);
    assert (zcert_save_public (fourth, path) == 0);
    assert (s_test_reaches_soon (server, endpoint, server_key, fourth));
    assert (!s_test_reaches (server, endpoint, server_key, third, 200));
    assert (!s_test_reaches (server, endpoint, server_key, stranger, 200));
    zcert_destroy (&third);
    zcert_destroy (&fourth);

    //  Garbage on the ZAP endpoint is dropped or refused, and the handler goes on
    zsock_t *raw = zsock_new_dealer (S_ZAP_ENDPOINT);
    assert (raw);
    zstr_send (raw, "garbage");
    zstr_sendm (raw, "");
    zstr_send (raw, "2.0");
    zstr_sendx (raw, "", "1.0", NULL);
    zstr_sendx (raw, "", "1.0", "7", "test-clients", "127.0.0.1", "", "NULL", NULL);
    zstr_sendx (raw, "", "1.0", "8", "test-clients", "127.0.0.1", "", "CURVE", "short", NULL);
    zstr_sendx (raw, "", "1.0", "9", "test-clients", "127.0.0.1", "", "CURVE", "a", "b", NULL);
    const char *expected[] = {"7", "8", "9"};
    zpoller_t *poller = zpoller_new (raw, NULL);
    for (int index = 0; index < 3; index++) {
        assert (zpoller_wait (poller, 5000) == raw);
        zmsg_t *reply = zmsg_recv (raw);
        assert (zmsg_size (reply) == 7);
        char *delimiter = zmsg_popstr (reply), *version = zmsg_popstr (reply);
        char *id = zmsg_popstr (reply), *status = zmsg_popstr (reply);
        assert (streq (id, expected[index]) && streq (status, "400"));
        zstr_free (&delimiter);
        zstr_free (&version);
        zstr_free (&id);
        zstr_free (&status);
        zmsg_destroy (&reply);
    }
    zpoller_destroy (&poller);
    zsock_destroy (&raw);
    assert (s_test_reaches (server, endpoint, server_key, allowed, 5000));

    //  A signal to the process (it sets zsys_interrupted) does not stop the handler:
    //  handshakes made while it is set and after it are still answered
    zsys_interrupted = 1;
    assert (s_test_reaches (server, endpoint, server_key, allowed, 5000));
    assert (s_test_reaches (server, endpoint, server_key, allowed, 5000));
    zsys_interrupted = 0;
    assert (s_test_reaches (server, endpoint, server_key, allowed, 5000));

    zsock_destroy (&server);
    zsock_destroy (&peers);
    sn_zap_destroy (&zap);
    zcert_destroy (&server_cert);
    zcert_destroy (&allowed);
    zcert_destroy (&stranger);
    char *command = zsys_sprintf ("rm -rf '%s' '%s' '%s'", dir, bad_dir, odd_dir);
    assert (system (command) == 0);
    free (command);
    if (verbose)
        zsys_info ("sn_zap: ok");
}
