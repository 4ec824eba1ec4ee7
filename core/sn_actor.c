/*  sn_actor: starting an actor whose start can fail.
 */
#include "sn_actor.h"

zactor_t *
sn_actor_start (zactor_fn *actor, void *args, const char *name, char *error, size_t size)
{
    zactor_t *self = zactor_new (actor, args);
    assert (self);
    zstr_send (self, "START");
    char *status = zstr_recv (self);
    if (status && streq (status, "OK")) {
        zstr_free (&status);
        return self;
    }
    if (status)
        snprintf (error, size, "%s", status);
    else
        snprintf (error, size, "%s did not start", name);
    zstr_free (&status);
    zactor_destroy (&self);
    return NULL;
}

uint64_t
sn_actor_count (zactor_t *actor, const char *command)
{
    zstr_send (actor, command);
    char *answer = zstr_recv (actor);
    assert (answer);
    uint64_t count = strtoull (answer, NULL, 10);
    free (answer);
    return count;
}

uint64_t
sn_actor_count_past (zactor_t *actor, const char *command, uint64_t count, int timeout)
{
    int64_t deadline = zclock_mono () + timeout;
    uint64_t now;
    while ((now = sn_actor_count (actor, command)) <= count) {
        assert (zclock_mono () < deadline);
        zclock_sleep (10); //  poll interval of the wait, not synchronisation
    }
    return now;
}

//  Selftest: an actor that starts when its args say so, and counts the COUNTs asked.
static void
s_test_actor (zsock_t *pipe, void *args)
{
    zsock_signal (pipe, 0);
    bool running = true;
    unsigned asked = 0;
    while (running) {
        char *command = zstr_recv (pipe);
        if (!command)
            break;
        if (streq (command, "COUNT"))
            zstr_sendf (pipe, "%u", asked++);
        else if (streq (command, "START"))
            zstr_send (pipe, args ? "OK" : "cannot bind tcp://nowhere");
        else if (streq (command, "$TERM"))
            running = false;
        zstr_free (&command);
    }
}

void
sn_actor_test (bool verbose)
{
    char error[64];
    zactor_t *actor = sn_actor_start (s_test_actor, "yes", "test", error, sizeof error);
    assert (actor);
    assert (sn_actor_count (actor, "COUNT") == 0);
    assert (sn_actor_count_past (actor, "COUNT", 3, 5000) == 4);
    zactor_destroy (&actor);
    actor = sn_actor_start (s_test_actor, NULL, "test", error, sizeof error);
    assert (actor == NULL);
    assert (streq (error, "cannot bind tcp://nowhere"));
    if (verbose)
        zsys_info ("sn_actor: %s", error);
}
