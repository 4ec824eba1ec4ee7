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

//  Selftest: an actor that starts when its args say so.
static void
s_test_actor (zsock_t *pipe, void *args)
{
    zsock_signal (pipe, 0);
    bool running = true;
    while (running) {
        char *command = zstr_recv (pipe);
        if (!command)
            break;
        if (streq (command, "START"))
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
    zactor_destroy (&actor);
    actor = sn_actor_start (s_test_actor, NULL, "test", error, sizeof error);
    assert (actor == NULL);
    assert (streq (error, "cannot bind tcp://nowhere"));
    if (verbose)
        zsys_info ("sn_actor: %s", error);
}
