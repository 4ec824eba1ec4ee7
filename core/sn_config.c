/*  sn_config: every option of a node, with embedded defaults, a ZPL file and flags.
 */
#include "sn_config.h"
#include "sn_tokens.h"
#include "sn_key.h"

//  Replace a string field with a copy of value.
static void
s_set (char **field, const char *value)
{
    free (*field);
    *field = strdup (value);
}

//  Set an optional file; an empty value unsets it, so that a flag can turn off
//  what the config file turned on.
static void
s_set_path (char **field, const char *value)
{
    free (*field);
    *field = *value ? strdup (value) : NULL;
}

//  Parse a whole decimal number within [min, max]. Returns 0, or -1.
static int
s_number (const char *text, uint64_t min, uint64_t max, uint64_t *result)
{
    if (!text || *text < '0' || *text > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long value = strtoull (text, &end, 10);
    if (errno || *end || value < min || value > max)
        return -1;
    *result = value;
    return 0;
}

//  The host name, cut down to what a node name may hold.
static void
s_default_name (sn_config_t *self)
{
    char host[256] = "";
    gethostname (host, sizeof host - 1);
    char name[SN_NAME_MAX + 1];
    size_t len = 0;
    for (const char *c = host; *c && *c != '.' && len < SN_NAME_MAX; c++)
        if (isalnum ((unsigned char) *c) || *c == '_' || *c == '-')
            name[len++] = *c;
    name[len] = 0;
    s_set (&self->name, sn_name_valid (name) ? name : "node");
}

sn_config_t *
sn_config_new (void)
{
    sn_config_t *self = (sn_config_t *) zmalloc (sizeof (sn_config_t));
    s_default_name (self);
    s_set (&self->data_dir, "./supernode-data");
    s_set (&self->http, "127.0.0.1:8080");
    s_set (&self->clients, "tcp://127.0.0.1:7500");
    s_set (&self->peers, "tcp://127.0.0.1:7501");
    self->join = zlist_new ();
    zlist_autofree (self->join);
    self->rf = 3;
    self->partitions = 64;
    self->map_size = (size_t) 64 << 30;
    self->max_body = 1 << 20;
    //  Each gateway thread waits for its request to be committed, so the threads
    //  bound how many HTTP puts share one commit (one fsync).
    self->http_threads = 32;
    self->http_timeout = 10000;
    self->write_timeout = 2000;
    self->anti_entropy = 2000;
    self->heartbeat = 500;
    self->suspect = 2000;
    self->dead = 4000;
    self->keep_finished = 3600 * 1000;
    return self;
}

void
sn_config_destroy (sn_config_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        sn_config_t *self = *self_p;
        free (self->name);
        free (self->data_dir);
        free (self->http);
        free (self->clients);
        free (self->peers);
        free (self->hooks_allow);
        free (self->hooks_deny);
        free (self->http_tokens);
        free (self->http_cert);
        free (self->curve_cert);
        free (self->curve_clients);
        free (self->curve_cluster);
        zlist_destroy (&self->join);
        free (self);
        *self_p = NULL;
    }
}

//  Set one option by its name (the long flag without "--", or the ZPL key under
//  "node"). Returns 0, or -1 with the reason in error.
//  The field of a timing option in ms, by its file or flag name, or NULL.
static int *
s_timing (sn_config_t *self, const char *option)
{
    if (streq (option, "write_timeout_ms") || streq (option, "write-timeout-ms"))
        return &self->write_timeout;
    if (streq (option, "anti_entropy_ms") || streq (option, "anti-entropy-ms"))
        return &self->anti_entropy;
    if (streq (option, "heartbeat_ms") || streq (option, "heartbeat-ms"))
        return &self->heartbeat;
    if (streq (option, "suspect_ms") || streq (option, "suspect-ms"))
        return &self->suspect;
    if (streq (option, "dead_ms") || streq (option, "dead-ms"))
        return &self->dead;
    return NULL;
}

static int
s_apply (sn_config_t *self, const char *option, const char *value, char *error, size_t size)
{
    uint64_t number;
    if (streq (option, "name"))
        s_set (&self->name, value);
    else if (streq (option, "data"))
        s_set (&self->data_dir, value);
    else if (streq (option, "http"))
        s_set (&self->http, value);
    else if (streq (option, "clients"))
        s_set (&self->clients, value);
    else if (streq (option, "peers"))
        s_set (&self->peers, value);
    else if (streq (option, "join"))
        zlist_append (self->join, (void *) value);
    else if (streq (option, "rf")) {
        if (s_number (value, 1, 16, &number))
            goto bad_number;
        self->rf = (uint32_t) number;
    }
    else if (streq (option, "partitions")) {
        if (s_number (value, 1, 65536, &number))
            goto bad_number;
        self->partitions = (uint32_t) number;
    }
    else if (streq (option, "map_size_mb") || streq (option, "map-size-mb")) {
        if (s_number (value, 1, (uint64_t) 1 << 24, &number))
            goto bad_number;
        self->map_size = (size_t) number << 20;
    }
    else if (streq (option, "max_body_kb") || streq (option, "max-body-kb")) {
        if (s_number (value, 1, 1 << 20, &number))
            goto bad_number;
        self->max_body = (size_t) number << 10;
    }
    else if (streq (option, "http_threads") || streq (option, "http-threads")) {
        if (s_number (value, 1, 256, &number))
            goto bad_number;
        self->http_threads = (int) number;
    }
    else if (streq (option, "http_timeout_ms") || streq (option, "http-timeout-ms")) {
        if (s_number (value, 100, 600000, &number))
            goto bad_number;
        self->http_timeout = (int) number;
    }
    else if (streq (option, "keep_finished_ms") || streq (option, "keep-finished-ms")) {
        //  Up to a week: what a node holds in that time must fit in its memory
        if (s_number (value, 10, 7 * 24 * 3600 * 1000, &number)) {
            snprintf (error, size, "%s: '%s' is not a number of ms from 10 to 604800000", option,
                      value);
            return -1;
        }
        self->keep_finished = (int) number;
    }
    else if (streq (option, "event_retention_ms") || streq (option, "event-retention-ms")) {
        //  0 keeps user events for ever. Otherwise at least an hour, so that the hours
        //  anti-entropy compares are whole hours on either side of the horizon, and at
        //  most about 100 years, well inside what a key's time can hold
        if (s_number (value, 0, SN_CONFIG_RETENTION_MAX, &number) ||
            (number && number < SN_CONFIG_RETENTION_MIN)) {
            snprintf (error, size,
                      "%s: '%s' is not 0 (keep for ever) or a number of ms from %lld to %lld",
                      option, value, (long long) SN_CONFIG_RETENTION_MIN,
                      (long long) SN_CONFIG_RETENTION_MAX);
            return -1;
        }
        self->event_retention = (int64_t) number;
    }
    else if (s_timing (self, option)) {
        if (s_number (value, 10, 3600000, &number))
            goto bad_number;
        *s_timing (self, option) = (int) number;
    }
    else if (streq (option, "verbose"))
        self->verbose = streq (value, "1") || streq (value, "true");
    else if (streq (option, "http_cert") || streq (option, "http-cert"))
        s_set_path (&self->http_cert, value);
    else if (streq (option, "http_tokens") || streq (option, "http-tokens"))
        s_set_path (&self->http_tokens, value);
    else if (streq (option, "callback_allow") || streq (option, "callback-allow"))
        s_set (&self->hooks_allow, value);
    else if (streq (option, "callback_deny") || streq (option, "callback-deny"))
        s_set (&self->hooks_deny, value);
    else if (streq (option, "curve_cert") || streq (option, "curve-cert"))
        s_set (&self->curve_cert, value);
    else if (streq (option, "curve_clients") || streq (option, "curve-clients"))
        s_set (&self->curve_clients, value);
    else if (streq (option, "curve_cluster") || streq (option, "curve-cluster"))
        s_set (&self->curve_cluster, value);
    else {
        snprintf (error, size, "unknown option '%s'", option);
        return -1;
    }
    return 0;
bad_number:
    snprintf (error, size, "%s: '%s' is not a number in range", option, value);
    return -1;
}

int
sn_config_load (sn_config_t *self, const char *path, char *error, size_t size)
{
    assert (self);
    if (!zsys_file_exists (path)) {
        snprintf (error, size, "config file %s does not exist", path);
        return -1;
    }
    zconfig_t *root = zconfig_load (path);
    if (!root) {
        snprintf (error, size, "config file %s is not valid ZPL", path);
        return -1;
    }
    int rc = 0;
    zconfig_t *node = zconfig_locate (root, "node");
    for (zconfig_t *item = node ? zconfig_child (node) : NULL; item && rc == 0;
         item = zconfig_next (item)) {
        const char *value = zconfig_value (item);
        rc = s_apply (self, zconfig_name (item), value ? value : "", error, size);
    }
    zconfig_destroy (&root);
    return rc;
}

int
sn_config_parse_args (sn_config_t *self, int argc, char **argv, char *error, size_t size)
{
    assert (self);
    //  The file goes first so that every flag overrides it.
    for (int arg = 0; arg < argc; arg++) {
        const char *path = NULL;
        if (streq (argv[arg], "--config") && arg + 1 < argc)
            path = argv[arg + 1];
        else if (strncmp (argv[arg], "--config=", 9) == 0)
            path = argv[arg] + 9;
        if (path && sn_config_load (self, path, error, size))
            return -1;
    }
    for (int arg = 0; arg < argc; arg++) {
        const char *flag = argv[arg];
        if (streq (flag, "-v") || streq (flag, "--verbose")) {
            self->verbose = true;
            continue;
        }
        if (strncmp (flag, "--", 2) != 0) {
            snprintf (error, size, "unexpected argument '%s'", flag);
            return -1;
        }
        char option[64];
        const char *value;
        const char *equals = strchr (flag, '=');
        if (equals) {
            snprintf (option, sizeof option, "%.*s", (int) (equals - flag - 2), flag + 2);
            value = equals + 1;
        }
        else {
            snprintf (option, sizeof option, "%s", flag + 2);
            if (arg + 1 >= argc) {
                snprintf (error, size, "%s needs a value", flag);
                return -1;
            }
            value = argv[++arg];
        }
        if (streq (option, "config"))
            continue;
        if (s_apply (self, option, value, error, size))
            return -1;
    }
    return 0;
}

int
sn_config_check (sn_config_t *self, char *error, size_t size)
{
    assert (self);
    if (!sn_name_valid (self->name)) {
        snprintf (error, size,
                  "name '%s' is not valid: use 1 to %d of A-Z a-z 0-9 _ . - (not first -)",
                  self->name, SN_NAME_MAX);
        return -1;
    }
    const char *colon = strrchr (self->http, ':');
    uint64_t port;
    //  One address only: civetweb would take a list, and only its last port would
    //  get the HTTPS suffix
    if (!colon || s_number (colon + 1, 1, 65535, &port) || strpbrk (self->http, ", \t")) {
        snprintf (error, size, "http '%s' must be one HOST:PORT", self->http);
        return -1;
    }
    if (strncmp (self->clients, "tcp://", 6) && strncmp (self->clients, "ipc://", 6)) {
        snprintf (error, size, "clients '%s' must be a tcp:// or ipc:// endpoint", self->clients);
        return -1;
    }
    if (!*self->data_dir) {
        snprintf (error, size, "data directory must not be empty");
        return -1;
    }
    if (self->http_cert && access (self->http_cert, R_OK)) {
        snprintf (error, size, "http-cert %s: %s", self->http_cert, strerror (errno));
        return -1;
    }
    if (self->http_tokens) {
        //  Read now, so that a bad file stops the node before anything starts
        char reason[256];
        sn_tokens_t *tokens = sn_tokens_load (self->http_tokens, reason, sizeof reason);
        if (!tokens) {
            snprintf (error, size, "http-tokens: %s", reason);
            return -1;
        }
        sn_tokens_destroy (&tokens);
    }
    //  CURVE on the clients endpoint always names who is let in: a server key alone
    //  would let in anyone who has it, and it is not a secret
    if (!!self->curve_cert != !!self->curve_clients) {
        snprintf (error, size,
                  "curve-cert and curve-clients go together: the node's certificate "
                  "and the directory of the client certificates let in");
        return -1;
    }
    if ((self->curve_cert || self->curve_cluster) && !zsys_has_curve ()) {
        snprintf (error, size, "this libzmq was built without CURVE (libsodium): no curve options");
        return -1;
    }
    return 0;
}

void
sn_config_test (bool verbose)
{
    char error[256];
    sn_config_t *config = sn_config_new ();
    assert (sn_name_valid (config->name));
    assert (streq (config->http, "127.0.0.1:8080"));
    assert (streq (config->clients, "tcp://127.0.0.1:7500"));
    assert (config->partitions == 64 && config->rf == 3);
    assert (sn_config_check (config, error, sizeof error) == 0);

    //  A file, then flags on top of it
    char path[] = "/tmp/sn_config_test_XXXXXX";
    int fd = mkstemp (path);
    assert (fd >= 0);
    const char *text = "node\n    name = from-file\n    partitions = 16\n    http = "
                       "127.0.0.1:9000\n";
    assert (write (fd, text, strlen (text)) == (ssize_t) strlen (text));
    close (fd);
    char *argv[] = {"--http",    "127.0.0.1:9001",   "--config", path,    "--join",
                    "tcp://a:1", "--join=tcp://b:2", "-v",       "--rf=2"};
    assert (sn_config_parse_args (config, 9, argv, error, sizeof error) == 0);
    assert (streq (config->name, "from-file"));
    assert (config->partitions == 16);
    assert (streq (config->http, "127.0.0.1:9001"));
    assert (zlist_size (config->join) == 2);
    assert (streq ((char *) zlist_first (config->join), "tcp://a:1"));
    assert (config->verbose && config->rf == 2);
    assert (sn_config_check (config, error, sizeof error) == 0);
    unlink (path);

    //  Every kind of mistake is named
    char *bad_number[] = {"--partitions", "0"};
    assert (sn_config_parse_args (config, 2, bad_number, error, sizeof error) == -1);
    assert (strstr (error, "partitions"));
    char *timeouts[] = {"--http-timeout-ms", "2500"};
    assert (sn_config_parse_args (config, 2, timeouts, error, sizeof error) == 0);
    assert (config->http_timeout == 2500);
    timeouts[1] = "50";
    assert (sn_config_parse_args (config, 2, timeouts, error, sizeof error) == -1);
    assert (strstr (error, "http-timeout-ms"));
    char *timings[] = {"--anti-entropy-ms", "250", "--write-timeout-ms", "900", "--dead-ms", "5"};
    assert (sn_config_parse_args (config, 4, timings, error, sizeof error) == 0);
    assert (config->anti_entropy == 250 && config->write_timeout == 900);
    assert (sn_config_parse_args (config, 6, timings, error, sizeof error) == -1);
    assert (strstr (error, "dead-ms"));
    char *tokens[] = {"--http-tokens", "/nonexistent/tokens"};
    assert (sn_config_parse_args (config, 2, tokens, error, sizeof error) == 0);
    assert (streq (config->http_tokens, "/nonexistent/tokens"));
    assert (sn_config_check (config, error, sizeof error) == -1);
    assert (strstr (error, "http-tokens: tokens file /nonexistent/tokens: No such file"));
    char *cert[] = {"--http-cert", "/nonexistent/node.pem", "--http-tokens="};
    assert (sn_config_parse_args (config, 3, cert, error, sizeof error) == 0);
    assert (sn_config_check (config, error, sizeof error) == -1);
    assert (strstr (error, "http-cert /nonexistent/node.pem: No such file"));
    char *two_ports[] = {"--http", "127.0.0.1:9001,127.0.0.1:9002", "--http-cert="};
    assert (sn_config_parse_args (config, 3, two_ports, error, sizeof error) == 0);
    assert (sn_config_check (config, error, sizeof error) == -1);
    assert (strstr (error, "must be one HOST:PORT"));
    char *one_port[] = {"--http", "127.0.0.1:9001"};
    assert (sn_config_parse_args (config, 2, one_port, error, sizeof error) == 0);
    char *no_cert[] = {"--http-cert="};
    assert (sn_config_parse_args (config, 1, no_cert, error, sizeof error) == 0);
    assert (!config->http_cert);
    char *no_tokens[] = {"--http-tokens="};
    assert (sn_config_parse_args (config, 1, no_tokens, error, sizeof error) == 0);
    assert (!config->http_tokens);
    assert (sn_config_check (config, error, sizeof error) == 0);
    char *keep[] = {"--keep-finished-ms", "250"};
    assert (sn_config_parse_args (config, 2, keep, error, sizeof error) == 0);
    assert (config->keep_finished == 250);
    keep[1] = "5";
    assert (sn_config_parse_args (config, 2, keep, error, sizeof error) == -1);
    assert (strstr (error, "keep-finished-ms"));
    //  Retention of user events: 0 or at least an hour, a whole number
    assert (config->event_retention == 0);
    char *retention[] = {"--event-retention-ms", "3600000"};
    assert (sn_config_parse_args (config, 2, retention, error, sizeof error) == 0);
    assert (config->event_retention == 3600000);
    const char *bad_retentions[] = {"3599999", "-1", "1h", "", "99999999999999999999", "1.5"};
    for (size_t index = 0; index < sizeof bad_retentions / sizeof *bad_retentions; index++) {
        retention[1] = (char *) bad_retentions[index];
        assert (sn_config_parse_args (config, 2, retention, error, sizeof error) == -1);
        assert (strstr (error, "event-retention-ms: '"));
        assert (strstr (error, "not 0 (keep for ever) or a number of ms from 3600000"));
    }
    assert (config->event_retention == 3600000);
    retention[1] = "0";
    assert (sn_config_parse_args (config, 2, retention, error, sizeof error) == 0);
    assert (config->event_retention == 0);
    char *unknown[] = {"--colour", "red"};
    assert (sn_config_parse_args (config, 2, unknown, error, sizeof error) == -1);
    assert (strstr (error, "unknown option 'colour'"));
    char *missing[] = {"--name"};
    assert (sn_config_parse_args (config, 1, missing, error, sizeof error) == -1);
    char *stray[] = {"run"};
    assert (sn_config_parse_args (config, 1, stray, error, sizeof error) == -1);
    char *no_file[] = {"--config", "/nonexistent/sn.cfg"};
    assert (sn_config_parse_args (config, 2, no_file, error, sizeof error) == -1);
    assert (strstr (error, "does not exist"));

    //  A file with a value out of range, or an option that does not exist, is named
    char bad_path[] = "/tmp/sn_config_test_XXXXXX";
    fd = mkstemp (bad_path);
    assert (fd >= 0);
    const char *bad_text = "node\n    event_retention_ms = 7200000\n";
    assert (write (fd, bad_text, strlen (bad_text)) == (ssize_t) strlen (bad_text));
    close (fd);
    assert (sn_config_load (config, bad_path, error, sizeof error) == 0);
    assert (config->event_retention == 7200000);
    fd = open (bad_path, O_WRONLY | O_TRUNC);
    bad_text = "node\n    partitions = lots\n";
    assert (write (fd, bad_text, strlen (bad_text)) == (ssize_t) strlen (bad_text));
    close (fd);
    assert (sn_config_load (config, bad_path, error, sizeof error) == -1);
    assert (strstr (error, "partitions: 'lots'"));
    fd = open (bad_path, O_WRONLY | O_TRUNC);
    bad_text = "node\n    colour = red\n";
    assert (write (fd, bad_text, strlen (bad_text)) == (ssize_t) strlen (bad_text));
    close (fd);
    assert (sn_config_load (config, bad_path, error, sizeof error) == -1);
    assert (strstr (error, "unknown option 'colour'"));
    unlink (bad_path);
    char *bad_name[] = {"--name", "a/b"};
    assert (sn_config_parse_args (config, 2, bad_name, error, sizeof error) == 0);
    assert (sn_config_check (config, error, sizeof error) == -1);
    char *bad_http[] = {"--name", "n1", "--http", "localhost"};
    assert (sn_config_parse_args (config, 4, bad_http, error, sizeof error) == 0);
    assert (sn_config_check (config, error, sizeof error) == -1);
    //  CURVE on clients needs both the node's certificate and the allowed clients
    sn_config_destroy (&config);
    config = sn_config_new ();
    char *curve[] = {"--curve-cert", "/x/node", "--curve_clients=/x/clients", "--curve-cluster",
                     "/x/cluster"};
    assert (sn_config_parse_args (config, 2, curve, error, sizeof error) == 0);
    assert (streq (config->curve_cert, "/x/node"));
    assert (sn_config_check (config, error, sizeof error) == -1);
    assert (strstr (error, "curve-clients"));
    assert (sn_config_parse_args (config, 5, curve, error, sizeof error) == 0);
    assert (streq (config->curve_clients, "/x/clients"));
    assert (streq (config->curve_cluster, "/x/cluster"));
    assert (sn_config_check (config, error, sizeof error) == (zsys_has_curve () ? 0 : -1));
    if (verbose)
        zsys_info ("sn_config: last error: %s", error);
    sn_config_destroy (&config);
    sn_config_destroy (&config);
}
